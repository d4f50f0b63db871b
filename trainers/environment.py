"""The environment that gives a child process (a trial worker, a torchrun rank) these settings.

>>> from pathlib import Path
>>> from headwater.core.settings import HeadwaterSettings
>>> env = settings_environment(HeadwaterSettings(home=Path("/tmp/x"), topic_prefix="t-"))
>>> env["HEADWATER_HOME"], env["HEADWATER_TOPIC_PREFIX"]
('/tmp/x', 't-')
"""

from __future__ import annotations

import os

from pydantic import SecretStr

from headwater.core.settings import ENV_PREFIX, HeadwaterSettings


def settings_environment(settings: HeadwaterSettings) -> dict[str, str]:
    """This process's environment with every ``HEADWATER_*`` setting replaced by ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update({k: v for k, v in os.environ.items() if k.startswith(("HEADWATER_TEST_",))})
    for name in HeadwaterSettings.model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            text = value.get_secret_value()
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        env[f"{ENV_PREFIX}{name.upper()}"] = text
    return env
