"""Where trials run: each backend places, launches, polls and kills trials, and never decides."""
