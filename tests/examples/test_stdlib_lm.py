"""`examples/stdlib_lm.py` and its corpus: the split, the documents, the scores,
the time budget, greedy completion, and the whole `--quick` run."""

import hashlib
import lzma
import math
import pathlib
import sys

import keras
import numpy as np
import pytest

# `examples/` is not a package; the example imports its siblings by name.
_EXAMPLES = pathlib.Path(__file__).parents[2] / "examples"
sys.path.insert(0, str(_EXAMPLES))
import _stdlib_corpus as corpus  # noqa: E402
import stdlib_lm  # noqa: E402

SOURCE = '''"""A module."""
import os

X = 1


@decorator
@other(2)
def first(a):
    return a  # é


class Second:
    def method(self):
        pass


async def third():
    await x
if X:
    def hidden():
        pass
'''


def test_documents_are_the_top_level_functions_and_classes_with_decorators():
    documents = corpus.file_documents(SOURCE)
    assert documents == [
        b"@decorator\n@other(2)\ndef first(a):\n    return a  # \xc3\xa9\n",
        b"class Second:\n    def method(self):\n        pass\n",
        b"async def third():\n    await x\n",
    ]


def test_source_that_does_not_parse_gives_no_document():
    assert corpus.file_documents("def broken(:\n    pass\n") == []
    assert corpus.file_documents("x = 1\0\n") == []


def test_files_leave_out_test_directories_and_are_sorted(tmp_path):
    for name in ("b.py", "a/c.py", "a/test/d.py", "tests/e.py", "x/tests/f.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("pass\n")
    (tmp_path / "test.py").write_text("pass\n")  # a module named test stays
    (tmp_path / "notes.txt").write_text("not python\n")
    assert corpus.stdlib_files(tmp_path) == ["a/c.py", "b.py", "test.py"]


def test_the_split_is_the_first_five_percent_of_the_sha1_range():
    paths = [f"package_{i}/module_{i}.py" for i in range(2_000)]
    expected = [
        path
        for path in paths
        if int(hashlib.sha1(path.encode()).hexdigest()[:16], 16) / 2**64 < 0.05
    ]
    train, validation = corpus.split_files(paths)
    assert validation == expected
    assert train == [path for path in paths if path not in set(expected)]
    assert 70 <= len(validation) <= 130  # about 5%
    # A file keeps its side whatever the other files are.
    assert corpus.split_files(paths[::-1])[1] == expected[::-1]


def test_the_stdlib_split_holds_out_about_five_percent_of_the_files():
    paths = corpus.stdlib_files()
    assert "os.py" in paths and "json/decoder.py" in paths
    assert not any("/test/" in f"/{path}" for path in paths)
    train, validation = corpus.split_files(paths)
    assert 0.02 < len(validation) / len(paths) < 0.08
    assert corpus.split_files(paths) == (train, validation)


def test_xz_bits_per_byte_is_eight_times_the_compression_ratio():
    documents = [b"def f():\n    return 1\n" * 50, bytes(range(256)) * 4]
    raw = b"".join(documents)
    preset = 9 | lzma.PRESET_EXTREME
    size = len(lzma.compress(raw, format=lzma.FORMAT_XZ, preset=preset))
    assert corpus.xz_bits_per_byte(documents) == pytest.approx(8 * size / len(raw))


def test_lstm_has_about_the_requested_number_of_parameters():
    for target in (200_000, 826_000):
        units = stdlib_lm.lstm_units_for(target, 32)
        model = stdlib_lm.build_lstm(units, 32)
        assert abs(model.count_params() - target) / target < 0.01


@pytest.fixture(scope="module")
def tiny():
    """A tiny transformer and the packed rows of two documents (length 16)."""
    keras.utils.set_random_seed(0)
    model = stdlib_lm.build_transformer(num_layers=1, hidden_dim=32)
    documents = [b"def f(x):\n    return x + 1\n", b"class A:\n    pass\n"]
    return model, stdlib_lm.pack_rows(documents, 16)


def test_bits_per_byte_is_the_masked_cross_entropy_in_bits(tiny):
    model, rows = tiny
    tokens = np.stack([row["token_ids"] for row in rows])
    labels = np.stack([row["labels"] for row in rows])
    weights = np.stack([row["loss_mask"] for row in rows])
    logits = model.predict_on_batch(
        {
            "token_ids": tokens,
            "segment_ids": np.stack([row["segment_ids"] for row in rows]),
            "positions": np.stack([row["positions"] for row in rows]),
        }
    ).astype("float64")
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    picked = probabilities[
        np.arange(len(rows))[:, None], np.arange(16)[None], labels
    ]  # (rows, 16)
    expected = -np.sum(weights * np.log2(picked)) / np.sum(weights)
    # 45 bytes in two documents; the last byte of each has no target.
    assert np.sum(weights) == 45 - 2
    got = stdlib_lm.bits_per_byte(model, rows, batch_size=2)  # a short last batch
    assert got == pytest.approx(expected, rel=1e-5)


def test_greedy_completion_matches_argmax_over_the_exact_prefix(tiny):
    model, _ = tiny
    prompt = "def f("
    tokens = list(prompt.encode())
    for _ in range(3):  # the reference: no padding, the prefix alone
        x = np.array([tokens], "int32")
        logits = model.predict_on_batch(
            {
                "token_ids": x,
                "segment_ids": np.ones_like(x),
                "positions": np.arange(x.shape[1], dtype="int32")[None],
            }
        )
        tokens.append(int(np.argmax(logits[0, -1])))
    expected = bytes(tokens).decode("utf-8", errors="replace")
    assert stdlib_lm.greedy_completion(model, prompt, 3, length=32) == expected


def test_time_budget_schedule_warms_up_then_decays_to_a_tenth():
    budget = stdlib_lm.TimeBudget(seconds=100.0, peak=1e-3, warmup_steps=10)
    budget.steps, budget.elapsed = 4, 0.0
    assert budget.learning_rate() == pytest.approx(1e-3 * 5 / 10)
    budget.steps, budget.elapsed = 50, 50.0
    assert budget.learning_rate() == pytest.approx(1e-3 * (0.1 + 0.45))
    budget.elapsed = 150.0
    assert budget.learning_rate() == pytest.approx(1e-4)
    budget.max_steps, budget.elapsed = 200, 10.0  # steps may run out first
    expected = 0.1 + 0.45 * (1 + math.cos(math.pi * 0.25))
    assert budget.learning_rate() == pytest.approx(1e-3 * expected)


def test_training_stops_at_max_steps_with_the_callbacks_learning_rate(tiny):
    model = stdlib_lm.build_transformer(num_layers=1, hidden_dim=32)
    _, rows = tiny
    args = stdlib_lm.parse_args(["--quick", "--max-steps", "2", "--batch-size", "1"])
    steps, _ = stdlib_lm.train(model, rows, args)
    assert steps == 2 and int(model.optimizer.iterations) == 2
    # Set before each step: step 1 is half of `max_steps`, so the cosine is at
    # its middle. On JAX too the optimizer holds it (the callback syncs first).
    lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    assert lr == pytest.approx(args.learning_rate * (0.1 + 0.45), rel=1e-6)


def test_quick_run_trains_both_models_and_saves(tmp_path, capsys):
    stdlib_lm.main(["--quick", "--no-export", "--output", str(tmp_path)])
    out = capsys.readouterr().out
    assert f"backend: {keras.backend.backend()}" in out
    assert "greedy completion by the transformer:\ndef fibonacci(n):\n" in out
    result = out.strip().splitlines()[-1].split()
    assert result[0] == "RESULT"
    figures = dict(item.split("=") for item in result[1:])
    for name in ("transformer_bpb", "lstm_bpb", "xz_bpb"):
        assert 0.5 < float(figures[name]) < 9.0  # barely trained: about 8
    assert (tmp_path / "stdlib_lm.keras").exists()
