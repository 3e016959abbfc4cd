"""The synthetic population behind `fraudwatch generate`: its config, fraud patterns, users, merchants
and what they do, and the two streams (a whole history, or live) drawn from it."""
