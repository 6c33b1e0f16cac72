"""Data sets: small real ones bundled with sparseopt (gzip-compressed, original bytes), and a generator.

==============================  ==========================================  =========  ==================
loader                          data set                                    rows       license
==============================  ==========================================  =========  ==================
``load_a9a``                    LIBSVM a9a (UCI Adult), 123 binary features  32,561 +   CC BY 4.0
                                (Platt 1998; Chang & Lin, LIBSVM)           16,281
``load_w8a``                    LIBSVM w8a (web pages), 300 binary          49,749     none stated (public
                                keyword features (Platt 1998; LIBSVM)                  benchmark; cite)
``load_sms_spam``               UCI SMS Spam Collection v.1 (Almeida,       5,574      CC BY 4.0
                                Gómez Hidalgo & Yamakami, DocEng 2011)
``load_sentiment_sentences``    UCI Sentiment Labelled Sentences: Amazon,   3 x 1,000  CC BY 4.0
                                IMDb, Yelp (Kotzias et al., KDD 2015)
==============================  ==========================================  =========  ==================

Provenance and checksums: ``data/README.md`` next to this module; the SMS
and Sentiment authors' own readmes ship as ``data/sms_spam_readme.txt`` and
``data/sentiment_labelled_sentences_readme.txt``.

Synthetic data
--------------
``make_zipf_classification``
    Sparse binary classification data shaped like a bag of words: feature
    frequencies follow a Zipf law, rows have unit norm, labels come from a
    random linear model plus noise.  Its defaults (100,000 x 100,000, ~50
    non-zeros a row) are the synthetic set of the estimator benchmarks
    (``benchmarks/bench_estimators.py``, ``asv_bench``).
"""

import gzip
import hashlib
from importlib import resources

import numpy as np

from ._synthetic import make_zipf_classification

__all__ = [
    "load_a9a",
    "load_w8a",
    "load_sms_spam",
    "load_sentiment_sentences",
    "make_zipf_classification",
    "data_path",
]

A9A_N_FEATURES = 123
W8A_N_FEATURES = 300
SENTIMENT_SITES = ("amazon", "imdb", "yelp")

# sha256 of the uncompressed files (from the data README)
_SHA256 = {
    "a9a.gz": "f5d5ffd8d865ff41328e7ee043e4b020816914ff6843ff15b98905ddbedce906",
    "a9a.t.gz": "1f448a153f0320399a7e40836eb207655b0bde0f21fc941cc472193daa9f5de9",
    "sms_spam.tsv.gz": "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d",
    "w8a.gz": "6a9fa8fd5f524303240a5db07d4b3d4a51e8b7b4b20a914105d8e3e8c81640f2",
    "amazon_cells_labelled.txt.gz": "47003fc0a0d4840b00e96e715b6189bad09e7443a3da41c4cbe12ffc79f86ae3",
    "imdb_labelled.txt.gz": "aef2e49e3da25714d61175e3a6e68eeef74a20a2f914318dc3be9947ea86512d",
    "yelp_labelled.txt.gz": "c76468b7b5c6e56a0804d728345c5f84aa2142ddb214420f61cc9cfd4c00d2ea",
}


def data_path(name):
    """Path of a bundled data file (e.g. ``"a9a.gz"``)."""
    return resources.files(__name__).joinpath("data", name)


def _read(name, verify=False):
    with resources.as_file(data_path(name)) as path, gzip.open(path, "rb") as f:
        raw = f.read()
    if verify and hashlib.sha256(raw).hexdigest() != _SHA256[name]:
        raise OSError(f"bundled data file {name} is corrupted (sha256 mismatch)")
    return raw


def _load_svmlight(name, n_features, verify):
    from io import BytesIO

    from sklearn.datasets import load_svmlight_file

    X, y = load_svmlight_file(BytesIO(_read(name, verify)), n_features=n_features)
    return X.tocsr(), y


def load_a9a(subset="train", verify=False):
    """Load LIBSVM's a9a (UCI Adult, binarised): ``X`` CSR float64, ``y`` in {-1, +1}.

    Parameters
    ----------
    subset : {"train", "test"}
        32,561 training rows or 16,281 test rows; both have 123 features.
    verify : bool
        Check the file's SHA-256 first.

    Returns
    -------
    X : scipy.sparse.csr_matrix, shape (n_samples, 123)
    y : ndarray of float64
    """
    names = {"train": "a9a.gz", "test": "a9a.t.gz"}
    if subset not in names:
        raise ValueError(f"subset must be 'train' or 'test', got {subset!r}")
    return _load_svmlight(names[subset], A9A_N_FEATURES, verify)


def load_w8a(verify=False):
    """Load LIBSVM's w8a (web page classification): ``X`` CSR float64, ``y`` in {-1, +1}.

    The training file only (LIBSVM's test file ``w8a.t`` is not bundled):
    make your own split.  Real-data quirks worth testing against: 4,203 of
    the rows have no features at all (only the intercept can predict them),
    and the classes are imbalanced (1,479 positive, 3.0 %).

    Parameters
    ----------
    verify : bool
        Check the file's SHA-256 first.

    Returns
    -------
    X : scipy.sparse.csr_matrix, shape (49749, 300)
        Binary keyword features (all values 1).
    y : ndarray of float64, shape (49749,)
    """
    return _load_svmlight("w8a.gz", W8A_N_FEATURES, verify)


def load_sms_spam(verify=False):
    """Load the SMS Spam Collection: ``texts`` (list of str) and ``y`` (1 = spam, 0 = ham).

    The 5,574 messages come in the original order (747 spam).
    """
    raw = _read("sms_spam.tsv.gz", verify).decode("utf-8")
    texts, labels = [], []
    for line in raw.splitlines():
        label, text = line.split("\t", 1)
        labels.append(label == "spam")
        texts.append(text)
    return texts, np.asarray(labels, dtype=np.int64)


def load_sentiment_sentences(verify=False):
    """Load the Sentiment Labelled Sentences: 3,000 review sentences from three sites.

    1,000 sentences each from amazon.com (cell phones), imdb.com and
    yelp.com, 500 positive and 500 negative per site, in the files' order
    (Amazon, then IMDb, then Yelp).  Two tasks: sentiment (``polarity``), or
    which site a sentence comes from (``site``, 3 classes; or site x
    polarity, 6 classes).

    The files are split on ``"\\n"`` only: two IMDb sentences contain U+0085
    (NEL), which ``str.splitlines`` would take for a line break.

    Parameters
    ----------
    verify : bool
        Check the files' SHA-256 first.

    Returns
    -------
    texts : list of str
    site : ndarray of str, shape (3000,)
        ``"amazon"``, ``"imdb"`` or ``"yelp"``.
    polarity : ndarray of int64, shape (3000,)
        1 positive, 0 negative.
    """
    texts, sites, labels = [], [], []
    for site, name in zip(SENTIMENT_SITES, ("amazon_cells", "imdb", "yelp")):
        raw = _read(f"{name}_labelled.txt.gz", verify).decode("utf-8")  # Amazon's file is ASCII
        lines = raw.split("\n")
        if lines[-1] == "":
            lines.pop()
        for line in lines:
            text, label = line.rsplit("\t", 1)
            texts.append(text)
            sites.append(site)
            labels.append(int(label))
    return texts, np.asarray(sites), np.asarray(labels, dtype=np.int64)
