"""Hypothesis profiles for the whole suite, chosen with the HYPOTHESIS_PROFILE variable.

``ci`` (the default) is Hypothesis's own ci profile with 100 examples. It
is derandomized, so every run tries the same examples and a failure
reproduces, and it has no example database and no deadline. ``long``
searches with fresh randomness, twenty times the examples and twice the
steps per stateful example. Run it as ``HYPOTHESIS_PROFILE=long uv run
pytest``. Tests that set `max_examples` themselves keep their own number
under both profiles.
"""

import os

from hypothesis import settings

settings.register_profile("ci", settings.get_profile("ci"), max_examples=100)
settings.register_profile("long", max_examples=2000, stateful_step_count=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
