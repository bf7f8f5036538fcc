import unicodedata

import numpy as np
import xxhash

from taggant.sketches.hashing import exact_hash, exact_hashes, normalize, words


def test_normalize_folds_compatibility_forms_and_case():
    assert normalize("Ｆｉｌｅ ﬁle ™") == b"file file tm"
    assert normalize("Straße ÉTÉ") == "straße été".encode()
    assert normalize("") == b""


def test_non_ascii_texts_lower_case_exactly_as_str_lower(copyright_texts):
    # Cased non-ASCII letters (which bytes.lower() leaves alone), the final sigma (context
    # dependent), İ (lower-cases to two code points) and texts whose only non-ASCII is caseless.
    cases = [
        "ΣΑΣ ΟΔΟΣ.",
        "İstanbul",
        "ÀBC déjà",
        "ǅ Ǆ ǈ",
        "naïve café",
        "ÉTÉ\nΣ",
        "Ⅻ ﬃ",
        "“A” — B…",
    ]
    texts = cases + [f"Hello WORLD {c} AND {c.upper()}" for c in cases]
    texts += [t for t in copyright_texts if not t.isascii()]
    assert len(texts) > len(cases) * 2 + 20
    for text in texts:
        assert normalize(text) == unicodedata.normalize("NFKC", text).lower().encode()


def test_words_split_on_ascii_whitespace_after_nfkc():
    # NBSP, em space and ideographic space become U+0020 under NFKC; U+2028 is kept in words.
    assert words(" a\tb\n\vc\f\rd\u00a0e\u2003f\u3000g ") == [
        b"a",
        b"b",
        b"c",
        b"d",
        b"e",
        b"f",
        b"g",
    ]
    assert words("x\u2028y") == ["x\u2028y".encode()]
    assert words(" \n\t") == []


def test_blockwise_nfkc_equals_whole_text_nfkc(copyright_texts):
    # Long texts with compatibility characters and combining marks around line starts, where
    # the block-wise fast path splits.
    tricky = "".join(f"line {i} ™ e\u0301 \u1100\u1161\n\u0301\u00a0ﬁ " for i in range(2000))
    for text in [tricky, tricky[1:], *copyright_texts]:
        expected = unicodedata.normalize("NFKC", text).lower().encode()
        assert normalize(text) == expected


def test_exact_hash_is_xxh3_128_of_joined_words():
    assert exact_hash("  The  MIT\nLicense ") == xxhash.xxh3_128_digest(b"the mit license")
    assert exact_hash("The MIT License") == exact_hash("the\tmit   license\n")
    assert exact_hash("The MIT License") != exact_hash("The MIT Licence")
    assert len(exact_hash("")) == 16


def test_exact_hashes_rows_are_big_endian_halves_in_digest_order(copyright_texts):
    texts = copyright_texts[:50]
    rows = exact_hashes(texts)
    assert rows.shape == (50, 2) and rows.dtype == np.uint64
    for text, (high, low) in zip(texts, rows, strict=True):
        assert exact_hash(text) == int(high).to_bytes(8, "big") + int(low).to_bytes(8, "big")
    by_rows = np.lexsort((rows[:, 1], rows[:, 0]))
    assert [exact_hash(texts[i]) for i in by_rows] == sorted(exact_hash(t) for t in texts)
