"""The worker process (host.py) and the GUI-side handle on it (client.py): DESIGN.md §1.

The GUI imports only client.py (no torch, no Qt); host.py runs in the spawned process.
"""
