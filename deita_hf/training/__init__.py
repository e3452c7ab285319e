"""The training entry points (they need the ``train`` extra: TRL, PEFT, DeepSpeed): ``sft``, ``dpo`` and the
scorer trainer ``scorer``. Nothing outside this package imports it.
"""
