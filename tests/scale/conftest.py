from __future__ import annotations

import pytest

pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'bert14[ray]')")
