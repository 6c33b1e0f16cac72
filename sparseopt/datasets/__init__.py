"""Small real data sets bundled with sparseopt (gzip-compressed, original bytes).

=================  ==========================================  =========  ===========
loader             data set                                    rows       license
=================  ==========================================  =========  ===========
``load_a9a``       LIBSVM a9a (UCI Adult), 123 binary features  32,561 +   CC BY 4.0
                   (Platt 1998; Chang & Lin, LIBSVM)           16,281
``load_sms_spam``  UCI SMS Spam Collection v.1 (Almeida,       5,574      CC BY 4.0
                   Gómez Hidalgo & Yamakami, DocEng 2011)
=================  ==========================================  =========  ===========

Provenance and checksums: ``data/README.md`` next to this module; the SMS
authors' own readme ships as ``data/sms_spam_readme.txt``.
"""

import gzip
import hashlib
from importlib import resources

import numpy as np

__all__ = ["load_a9a", "load_sms_spam", "data_path"]

A9A_N_FEATURES = 123

# sha256 of the uncompressed files (from the data README)
_SHA256 = {
    "a9a.gz": "f5d5ffd8d865ff41328e7ee043e4b020816914ff6843ff15b98905ddbedce906",
    "a9a.t.gz": "1f448a153f0320399a7e40836eb207655b0bde0f21fc941cc472193daa9f5de9",
    "sms_spam.tsv.gz": "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d",
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
    from io import BytesIO

    from sklearn.datasets import load_svmlight_file

    names = {"train": "a9a.gz", "test": "a9a.t.gz"}
    if subset not in names:
        raise ValueError(f"subset must be 'train' or 'test', got {subset!r}")
    raw = _read(names[subset], verify)
    X, y = load_svmlight_file(BytesIO(raw), n_features=A9A_N_FEATURES)
    return X.tocsr(), y


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
