"""Test fixtures that ship with edgekd (as ``fabric.testing`` does): real loopback boards, a fake power
sensor that drives the real sysfs reader, and model helpers. Used by edgekd's tests and benchmark
scripts, and usable by anyone testing code built on edgekd; nothing in the package imports it."""
