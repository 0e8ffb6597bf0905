import sys

from services.common.bus import main
from services.decider.service import Decider
from services.decider.settings import DeciderSettings

sys.exit(main(DeciderSettings, Decider))
