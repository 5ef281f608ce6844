"""``boruta completion bash|zsh``: a completion script made from the parser itself."""

from __future__ import annotations

import argparse

_BASH = """\
# boruta completion for bash; in zsh run `bashcompinit` first (done below for zsh).
_boruta_words() {
    case "$1" in
%(cases)s
    esac
}
_boruta() {
    local cur=${COMP_WORDS[COMP_CWORD]} path="" w i words
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        [[ $w == -* ]] && continue
        words=" $(_boruta_words "$path") "
        [[ $words == *" $w "* ]] && path="$path $w"
    done
    COMPREPLY=($(compgen -W "$(_boruta_words "$path")" -- "$cur"))
}
complete -F _boruta boruta
"""

_ZSH = """\
#compdef boruta
autoload -U +X bashcompinit && bashcompinit
"""


def _walk(parser: argparse.ArgumentParser, path: str, cases: list[str]) -> None:
    words: list[str] = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        words += [o for o in action.option_strings if o.startswith("--")]
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                words.append(name)
                _walk(child, f"{path} {name}", cases)
        elif not action.option_strings and action.choices:
            words += [str(c) for c in action.choices]
    cases.append(f'        "{path}") echo "{" ".join(words)}" ;;')


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    cases: list[str] = []
    _walk(parser, "", cases)
    bash = _BASH % {"cases": "\n".join(cases)}
    return bash if shell == "bash" else _ZSH + bash
