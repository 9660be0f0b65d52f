"""The test suite; ``tests.support`` holds its helpers, ``tests.soundness`` the soundness fuzzer."""
