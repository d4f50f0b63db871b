"""``python -m headwater.infra.dashboard``: the dashboard process that ``headwater up`` starts."""

from headwater.core.settings import load_settings
from headwater.infra.dashboard.service import main

if __name__ == "__main__":
    main(load_settings())
