"""Benchmarks at scale. Each prints a Markdown table with its conditions; none is a test."""
