"""The terminal UI (``melody-lc live``): a Textual app over the live engine (see app.py, session.py)."""
