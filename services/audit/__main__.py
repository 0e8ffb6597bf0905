import sys

from services.audit.service import Audit
from services.audit.settings import AuditSettings
from services.common.bus import main

sys.exit(main(AuditSettings, Audit))
