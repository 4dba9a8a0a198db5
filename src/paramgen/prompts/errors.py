"""The errors a prompt can raise: unreadable or trivial prompts, unusable model replies."""

from __future__ import annotations

from collections.abc import Sequence


class PromptError(ValueError):
    """A prompt could not be turned into a valid task.

    Subclasses ValueError so the command line's generic error handling reports it. The message
    always names the problem (the unread words, or why the task is trivial) and lists a few
    prompts that do work for the same classes, so the user can rephrase without the docs.

    Attributes: ``prompt`` (the text as given), ``unknown_words`` (words the rule grammar could not
    read, empty for other problems) and ``examples`` (the example prompts shown).
    """

    def __init__(self, message: str, *, prompt: str = "", unknown_words: Sequence[str] = (),
                 examples: Sequence[str] = ()) -> None:
        self.prompt = prompt
        self.unknown_words = tuple(unknown_words)
        self.examples = tuple(examples)
        self.reason = message
        full = message
        if self.examples:
            shown = "\n".join(f'  - "{e}"' for e in self.examples)
            full += f"\nPrompts that work for these classes look like:\n{shown}"
        super().__init__(full)


class LLMReplyError(PromptError):
    """A language-model backend replied with something that is not a usable bit string.

    ``reply`` holds the last raw reply so it can be logged or inspected.
    """

    def __init__(self, message: str, *, reply: str = "", prompt: str = "",
                 examples: Sequence[str] = ()) -> None:
        self.reply = reply
        super().__init__(message, prompt=prompt, examples=examples)
