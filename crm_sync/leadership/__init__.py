"""The leadership dashboard: its roll-ups and queries, the two ratings' arithmetic,
demo data from the seed, and ten years of history for the scale test."""
