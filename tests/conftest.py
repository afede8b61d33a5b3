"""Suite-wide settings; each test area keeps its fixtures in its own conftest.py."""
