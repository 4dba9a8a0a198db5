"""Adapters: task grids of LoRA/DoRA adapters trained with peft, PEFT folders in and out.

    ckpts = collect_adapters("digits", "runs/lora", tasks=300, recipe="r=4,targets=q,v")
    ckpts = pg.CheckpointSet.import_peft(folders, conditions=bits)    # adapters from elsewhere
    gen = pg.RPG(preset="cpu-tasks").fit(ckpts)
    gen.sample_to_peft(["out/odd"], condition="0101010101")            # a PEFT folder
    model = load_adapter("runs/lora/base", "out/odd")                 # peft.PeftModel

docs/adapters.md explains the choices and has the measurements.
"""

from paramgen.adapters.base import load_base, pretrain_base, save_base
from paramgen.adapters.collect import collect_adapters
from paramgen.adapters.evaluate import load_adapter, score_adapter
from paramgen.adapters.export import sample_to_peft
from paramgen.adapters.folders import read_peft_folder, write_peft_folder
from paramgen.adapters.importer import import_peft
from paramgen.adapters.recipe import LoraRecipe
from paramgen.adapters.training import adapter_state, attach, train_adapter

__all__ = ["LoraRecipe", "adapter_state", "attach", "collect_adapters", "import_peft",
           "load_adapter", "load_base", "pretrain_base", "read_peft_folder", "sample_to_peft",
           "save_base", "score_adapter", "train_adapter", "write_peft_folder"]
