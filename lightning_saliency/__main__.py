"""``python -m lightning_saliency report LOGDIR``."""
import sys

from lightning_saliency.cli import main

sys.exit(main())
