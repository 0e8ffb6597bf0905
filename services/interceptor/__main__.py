import sys

from services.interceptor.proxy import main

sys.exit(main())
