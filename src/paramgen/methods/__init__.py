"""Parameter generators behind one interface (see base.Generator)."""

from paramgen.methods.base import Generator, load_generator, read_config

METHODS: dict = {}


def register(cls):
    METHODS[cls.method] = cls
    return cls


from paramgen.methods.rpg import RPG, RPGConfig  # noqa: E402

register(RPG)

from paramgen.methods.pdiff import PDiff, PDiffConfig  # noqa: E402

register(PDiff)

from paramgen.methods.igpg import IGPG, IGPGConfig  # noqa: E402

register(IGPG)

__all__ = ["Generator", "IGPG", "IGPGConfig", "METHODS", "PDiff", "PDiffConfig", "RPG", "RPGConfig", "load_generator",
           "read_config", "register"]
