"""English number words ↔ digits: the data of `examples/translate.py`.

Every integer in `[0, 999_999]` has one spelling in American English without "and"
or hyphens ("three hundred forty two thousand six hundred five") and one digit
string ("3 4 2 6 0 5"). Sources are tokenized by word, targets by digit, with two
small vocabularies whose first ids are reserved: 0 padding, 1 `[START]`, 2 `[END]`.

`split_numbers` draws the train and test numbers per digit count, so one- to
four-digit numbers are not swamped by the 900,000 six-digit ones, and puts each
drawn number in exactly one split: the test numbers are never seen in training.
Only NumPy and the standard library are used, so the tests run on any backend.
"""

import numpy as np

MAX_NUMBER = 999_999
PAD, START, END = "[PAD]", "[START]", "[END]"
SPECIAL_TOKENS = (PAD, START, END)  # ids 0, 1, 2 in both vocabularies

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()  # 20..90

# "nine hundred ninety nine thousand nine hundred ninety nine": 9 words.
SOURCE_LENGTH = 9
# Six digits and `[END]`; the decoder input is `[START]` and up to six digits.
TARGET_LENGTH = 7

# Share of the drawn numbers per digit count 1..6, before capping at the 10, 90,
# 900, ... numbers that exist; six-digit numbers get the rest.
_DIGIT_COUNT_SHARES = (0.01, 0.02, 0.05, 0.12, 0.25)


def _below_thousand(n):
    """Words of 1 <= n <= 999 (no "zero")."""
    words = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        words += [_ONES[hundreds], "hundred"]
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words.append(_TENS[tens - 2])
        if ones:
            words.append(_ONES[ones])
    elif rest:
        words.append(_ONES[rest])
    return words


def number_to_words(n):
    """`342605` → `"three hundred forty two thousand six hundred five"`."""
    if not isinstance(n, (int, np.integer)) or not 0 <= n <= MAX_NUMBER:
        raise ValueError(
            f"number_to_words: argument `n` must be an integer in [0, {MAX_NUMBER}]; "
            f"received {n!r}."
        )
    n = int(n)
    if n == 0:
        return "zero"
    thousands, rest = divmod(n, 1000)
    words = []
    if thousands:
        words += _below_thousand(thousands) + ["thousand"]
    if rest:
        words += _below_thousand(rest)
    return " ".join(words)


def words_to_number(text):
    """The inverse of `number_to_words` (it parses only what that function writes)."""
    values = {word: i for i, word in enumerate(_ONES)}
    values.update({word: 10 * (i + 2) for i, word in enumerate(_TENS)})
    total, group = 0, 0
    for word in text.split():
        if word == "thousand":
            total, group = group * 1000, 0
        elif word == "hundred":
            group *= 100
        elif word in values:
            group += values[word]
        else:
            raise ValueError(f"words_to_number: unknown word {word!r} in {text!r}.")
    return total + group


def number_to_digits(n):
    """`342605` → `"3 4 2 6 0 5"`: one token per digit."""
    return " ".join(str(int(n)))


class Vocabulary:
    """Whitespace tokens ↔ ids; ids 0, 1, 2 are padding, `[START]` and `[END]`.

    Args:
        tokens: the ordinary tokens, in id order after the special ones.
    """

    def __init__(self, tokens):
        self.tokens = list(SPECIAL_TOKENS) + list(tokens)
        self._ids = {token: i for i, token in enumerate(self.tokens)}
        if len(self._ids) != len(self.tokens):
            raise ValueError(f"Vocabulary: duplicate tokens in {tokens!r}.")
        self.pad_id, self.start_id, self.end_id = (self._ids[t] for t in SPECIAL_TOKENS)

    def __len__(self):
        return len(self.tokens)

    def encode(self, text, length, start=False, end=False):
        """Ids of `text`'s tokens, optionally framed, padded with 0 to `length`."""
        ids = [self._ids[token] for token in text.split()]
        ids = [self.start_id] * start + ids + [self.end_id] * end
        if len(ids) > length:
            raise ValueError(
                f"Vocabulary.encode: {text!r} needs {len(ids)} ids; length={length}."
            )
        return ids + [self.pad_id] * (length - len(ids))

    def decode(self, ids):
        """The text of `ids`: stops at `[END]`, skips padding and `[START]`."""
        tokens = []
        for i in ids:
            i = int(i)
            if i == self.end_id:
                break
            if i not in (self.pad_id, self.start_id):
                tokens.append(self.tokens[i])
        return " ".join(tokens)


SOURCE_VOCABULARY = Vocabulary(_ONES + _TENS + ["hundred", "thousand"])
TARGET_VOCABULARY = Vocabulary("0123456789")


def split_numbers(num_train, num_test, seed=0):
    """Disjoint train and test numbers in `[0, 999_999]`, the same for a seed.

    Numbers are drawn without replacement per digit count (shares 1%, 2%, 5%,
    12%, 25% for one to five digits, capped at how many exist, and the rest six
    digits); each digit count gives the test split its share `num_test / total`.

    Returns:
        `(train, test)`: int64 arrays, shuffled, of about `num_train` and
        `num_test` numbers (rounding per digit count).
    """
    total = num_train + num_test
    if num_train < 1 or num_test < 1 or total > 500_000:
        raise ValueError(
            "split_numbers: arguments `num_train` and `num_test` must be positive "
            f"with a sum of at most 500,000; received {num_train} and {num_test}."
        )
    rng = np.random.default_rng(seed)
    test_share = num_test / total
    train, test = [], []
    remaining = total
    for digits in range(1, 7):
        low, high = (0 if digits == 1 else 10 ** (digits - 1)), 10**digits
        if digits <= len(_DIGIT_COUNT_SHARES):
            count = min(round(total * _DIGIT_COUNT_SHARES[digits - 1]), high - low)
        else:
            count = remaining
        drawn = low + rng.choice(high - low, size=count, replace=False)
        num_test_here = round(count * test_share)
        test.append(drawn[:num_test_here])
        train.append(drawn[num_test_here:])
        remaining -= count
    train, test = np.concatenate(train), np.concatenate(test)
    return rng.permutation(train), rng.permutation(test)


def encode_numbers(numbers):
    """Model arrays for `numbers`, all int32.

    Returns:
        dict with `"encoder_token_ids"` `(N, SOURCE_LENGTH)` (the words),
        `"decoder_token_ids"` `(N, TARGET_LENGTH)` (`[START]` + digits, teacher
        forcing) and `"labels"` `(N, TARGET_LENGTH)` (digits + `[END]`).
    """
    source = [
        SOURCE_VOCABULARY.encode(number_to_words(n), SOURCE_LENGTH) for n in numbers
    ]
    digits = [number_to_digits(n) for n in numbers]
    decoder = [TARGET_VOCABULARY.encode(d, TARGET_LENGTH, start=True) for d in digits]
    labels = [TARGET_VOCABULARY.encode(d, TARGET_LENGTH, end=True) for d in digits]
    return {
        "encoder_token_ids": np.asarray(source, dtype="int32").reshape(
            -1, SOURCE_LENGTH
        ),
        "decoder_token_ids": np.asarray(decoder, dtype="int32").reshape(
            -1, TARGET_LENGTH
        ),
        "labels": np.asarray(labels, dtype="int32").reshape(-1, TARGET_LENGTH),
    }
