"""Measurement records (append-only store) and reports."""
