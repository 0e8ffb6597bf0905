import sys

from services.common.bus import main
from services.resolver.service import Resolver
from services.resolver.settings import ResolverSettings

sys.exit(main(ResolverSettings, Resolver))
