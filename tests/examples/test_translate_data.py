"""The number-words data of `examples/translate.py`: spelling, tokens, splits."""

import importlib.util
import pathlib

import numpy as np
import pytest

# `examples/` is not a package: load the generator from its file.
_PATH = pathlib.Path(__file__).parents[2] / "examples" / "_number_words.py"
_SPEC = importlib.util.spec_from_file_location("_number_words", _PATH)
data = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(data)


@pytest.mark.parametrize(
    "number, words",
    [
        (0, "zero"),
        (7, "seven"),
        (13, "thirteen"),
        (20, "twenty"),
        (42, "forty two"),
        (100, "one hundred"),
        (105, "one hundred five"),
        (110, "one hundred ten"),
        (1_000, "one thousand"),
        (10_010, "ten thousand ten"),
        (100_000, "one hundred thousand"),
        (700_007, "seven hundred thousand seven"),
        (342_605, "three hundred forty two thousand six hundred five"),
        (
            999_999,
            "nine hundred ninety nine thousand nine hundred ninety nine",
        ),
    ],
)
def test_number_to_words_spells_numbers(number, words):
    assert data.number_to_words(number) == words


@pytest.mark.parametrize("bad", [-1, 1_000_000, 2.5, "5"])
def test_number_to_words_rejects_numbers_out_of_range(bad):
    with pytest.raises(ValueError, match="number_to_words"):
        data.number_to_words(bad)


def test_words_parse_back_to_the_number():
    numbers = np.random.default_rng(0).integers(0, data.MAX_NUMBER + 1, 5_000)
    for n in [*range(1_200), *numbers]:
        assert data.words_to_number(data.number_to_words(n)) == n


def test_every_spelling_fits_the_source_length_and_vocabulary():
    longest = data.number_to_words(777_777).split()
    assert len(longest) == data.SOURCE_LENGTH
    for n in (0, 15, 90, 777_777, 999_999):
        for word in data.number_to_words(n).split():
            assert word in data.SOURCE_VOCABULARY.tokens


def test_number_to_digits_is_one_token_per_digit():
    assert data.number_to_digits(342_605) == "3 4 2 6 0 5"
    assert data.number_to_digits(0) == "0"


def test_vocabularies_reserve_padding_start_and_end():
    for vocabulary in (data.SOURCE_VOCABULARY, data.TARGET_VOCABULARY):
        assert vocabulary.tokens[:3] == ["[PAD]", "[START]", "[END]"]
        assert (vocabulary.pad_id, vocabulary.start_id, vocabulary.end_id) == (0, 1, 2)
    assert len(data.TARGET_VOCABULARY) == 13  # the specials and ten digits


def test_tokenizer_round_trip():
    words = data.number_to_words(342_605)
    ids = data.SOURCE_VOCABULARY.encode(words, data.SOURCE_LENGTH)
    assert len(ids) == data.SOURCE_LENGTH and ids[-1] == 0  # 8 words, 1 padding
    assert data.SOURCE_VOCABULARY.decode(ids) == words
    digits = data.number_to_digits(342_605)
    ids = data.TARGET_VOCABULARY.encode(digits, 8, start=True, end=True)
    assert ids[0] == 1 and ids[-1] == 2
    assert data.TARGET_VOCABULARY.decode(ids) == digits


def test_decode_stops_at_the_end_token():
    ids = data.TARGET_VOCABULARY.encode("4 2", 6, end=True)  # 4 2 [END] pad pad pad
    ids[4] = ids[0]  # a token after [END] is ignored
    assert data.TARGET_VOCABULARY.decode(ids) == "4 2"


def test_encode_rejects_text_longer_than_length():
    with pytest.raises(ValueError, match="length=2"):
        data.TARGET_VOCABULARY.encode("1 2 3", 2)


def test_encode_numbers_shifts_the_target_for_teacher_forcing():
    arrays = data.encode_numbers([342_605, 7])
    decoder, labels = arrays["decoder_token_ids"], arrays["labels"]
    assert arrays["encoder_token_ids"].shape == (2, data.SOURCE_LENGTH)
    assert decoder.shape == labels.shape == (2, data.TARGET_LENGTH)
    assert all(a.dtype == np.int32 for a in arrays.values())
    # Decoder input: [START] then the digits; labels: the digits then [END].
    np.testing.assert_array_equal(decoder[:, 1:], labels[:, :-1] * (decoder[:, 1:] > 0))
    assert (
        decoder[1].tolist() == [1, data.TARGET_VOCABULARY.encode("7", 1)[0]] + [0] * 5
    )
    assert labels[1].tolist()[:3] == [decoder[1, 1], 2, 0]
    assert data.TARGET_VOCABULARY.decode(labels[0]) == "3 4 2 6 0 5"


def test_splits_are_disjoint_and_of_the_requested_size():
    train, test = data.split_numbers(20_000, 1_000, seed=0)
    assert not set(train.tolist()) & set(test.tolist())
    assert len(set(train.tolist())) == len(train)
    assert len(set(test.tolist())) == len(test)
    assert abs(len(train) - 20_000) <= 6 and abs(len(test) - 1_000) <= 6
    assert len(train) + len(test) == 21_000
    assert train.min() >= 0 and max(train.max(), test.max()) <= data.MAX_NUMBER


def test_splits_hold_every_digit_count():
    train, test = data.split_numbers(20_000, 1_000, seed=0)
    assert {len(str(n)) for n in train} == {1, 2, 3, 4, 5, 6}
    assert {len(str(n)) for n in test} >= {3, 4, 5, 6}


def test_splits_are_fixed_by_the_seed():
    first, second = data.split_numbers(2_000, 100, 3), data.split_numbers(2_000, 100, 3)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    other = data.split_numbers(2_000, 100, 4)
    assert not np.array_equal(first[1], other[1])


def test_split_numbers_rejects_more_numbers_than_it_can_draw():
    with pytest.raises(ValueError, match="split_numbers"):
        data.split_numbers(600_000, 1_000)
