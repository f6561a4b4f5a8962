import os
import sys

# Tests import their shared helpers (treecompare, ...) by module name.
sys.path.insert(0, os.path.dirname(__file__))
# MindSpore logs every graph compile at WARNING; keep test output readable.
os.environ.setdefault("GLOG_v", "3")
