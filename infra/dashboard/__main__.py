"""``python -m infra.dashboard``: the dashboard process that ``headwater up`` starts."""

from infra.dashboard.service import main
from infra.settings import load_settings

if __name__ == "__main__":
    main(load_settings())
