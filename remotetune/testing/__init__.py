"""What other code needs to test against remotetune, shipped in the package.

- :mod:`remotetune.testing.tuners`: the tuner contract tests (a pytest mixin) and cases.
- :mod:`remotetune.testing.backend`: :class:`FakeBackend` and :class:`FakeClock`, to drive
  the controller's loop in-process with scripted trials and no sleeps.
"""
