"""Settings and toolchain: the settings and cache one build works with (``context``),
the one place that knows the cache's folders (``cache``), the config file
(``config``), finding cargo and rustc (``toolchain``), and every difference between
operating systems (``platforms``)."""
