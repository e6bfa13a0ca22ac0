"""One line per export step, so a long export shows where it is."""


def report(verbose, message):
    if verbose:
        print(f"keras-attn export: {message}", flush=True)
