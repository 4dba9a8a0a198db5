"""Parameter generators behind one interface (see base.Generator)."""

from paramgen.methods.base import Generator, load_generator, read_config

METHODS: dict = {}


def register(cls):
    METHODS[cls.method] = cls
    return cls


from paramgen.methods.rpg import RPG, RPGConfig  # noqa: E402

register(RPG)

__all__ = ["Generator", "METHODS", "RPG", "RPGConfig", "load_generator", "read_config",
           "register"]
