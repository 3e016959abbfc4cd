"""Defaults the training report and the backtest share (a module of constants, importing nothing)."""

CARD_TOP_K = 100
"""Cards an analyst reviews per day, for the card precision top-k (the textbook's top 100)."""
