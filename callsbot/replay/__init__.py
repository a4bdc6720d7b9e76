"""Replay and backtest: recordings played through the real roles, without look-ahead.

docs/backtest.md describes the recording formats, the rules that keep a replay from seeing the
future, and how to read the backtest table.
"""
