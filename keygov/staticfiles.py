"""Static files served by the app (whitenoise), with or without ``collectstatic``."""

from __future__ import annotations

import os

from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """whitenoise's middleware. When it serves straight from the source folders (the finders;
    ``KEYGOV_STATIC_MANIFEST`` off), a STATIC_ROOT that ``collectstatic`` never filled is
    expected, not worth the warning whitenoise would print in every process."""

    def add_files(self, root, prefix=None):
        if self.use_finders and not os.path.isdir(root):
            return
        super().add_files(root, prefix)
