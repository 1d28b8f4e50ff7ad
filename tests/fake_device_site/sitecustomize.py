"""Puts the simulated CUDA device of ``tests/fake_device.py`` in place in every Python process
started with this folder (and the repository) on PYTHONPATH: the server and its workers."""

from tests.fake_device import install

install()
