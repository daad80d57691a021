import sys
from pathlib import Path

# Run from a checkout without installing: the plugin module sits one folder up.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
