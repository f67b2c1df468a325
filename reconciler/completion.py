"""Shell completion scripts for bash, zsh and fish, made from the command tree. Called by
cli (`reconciler completion SHELL`), which turns its argparse parser into `Command`s.

The scripts are static: completing a word never starts Python. They offer the
subcommands, each command's flags, a flag's choices (`-o text|json|yaml`), and file names
for flags that take a path. zsh runs the bash script through its `bashcompinit`, as
many tools ship theirs. No dependency: `shtab` writes no fish, and `argcomplete` runs the
program on every Tab.
"""

from __future__ import annotations

import dataclasses
import re

SHELLS = ("bash", "zsh", "fish")


@dataclasses.dataclass(frozen=True)
class Flag:
    """One option: its spellings, whether it takes a value, and which values."""

    names: tuple[str, ...]
    takes_value: bool
    choices: tuple[str, ...] = ()
    path: bool = False  # its value is a file or folder
    help: str = ""


@dataclasses.dataclass(frozen=True)
class Command:
    """A command (the program itself at the root) with its flags and subcommands."""

    name: str
    help: str = ""
    flags: tuple[Flag, ...] = ()
    commands: tuple[Command, ...] = ()


def script(root: Command, *, shell: str) -> str:
    """The completion script for `shell` (one of SHELLS)."""
    if shell == "bash":
        return _bash(root)
    if shell == "zsh":
        return ("#compdef " + root.name + "\n"
                f"# zsh completion for {root.name}: `{root.name} completion zsh > "
                f"\"${{fpath[1]}}/_{root.name}\"`, or `source <({root.name} completion zsh)`\n"
                "autoload -U +X bashcompinit && bashcompinit\n"
                + _bash(root, header=False))
    if shell == "fish":
        return _fish(root)
    raise ValueError(f"no completion for shell {shell!r}: expected one of {', '.join(SHELLS)}")


def _walk(command: Command, key: str) -> list[tuple[str, Command]]:
    found = [(key, command)]
    for sub in command.commands:
        found.extend(_walk(sub, f"{key}_{_ident(sub.name)}"))
    return found


def _ident(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", name)


def _bash(root: Command, *, header: bool = True) -> str:
    fn = "_" + _ident(root.name)
    every = _walk(root, _ident(root.name))
    steps = [f"{key}/{sub.name}) cmd={key}_{_ident(sub.name)};;"
             for key, command in every for sub in command.commands]
    words: list[str] = []
    values: list[str] = []
    for key, command in every:
        names = " ".join(name for flag in command.flags for name in flag.names)
        subs = " ".join(sub.name for sub in command.commands)
        words.append(f'{key}) subs="{subs}"; flags="{names}";;')
        for flag in command.flags:
            if not flag.takes_value:
                continue
            pattern = "|".join(f'"{key} {name}"' for name in flag.names)
            if flag.choices:
                action = f'COMPREPLY=($(compgen -W "{" ".join(flag.choices)}" -- "$cur"))'
            elif flag.path:
                action = 'COMPREPLY=($(compgen -f -- "$cur"))'
            else:
                action = "COMPREPLY=()"
            values.append(f"{pattern}) {action}; return;;")
    indent = "\n            "
    lines = [
        *([f"# bash completion for {root.name}: `source <({root.name} completion bash)`, "
           f"or save it as /etc/bash_completion.d/{root.name}"] if header else []),
        f"{fn}() {{",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
        f'    local cmd={_ident(root.name)} subs="" flags="" i',
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        case "$cmd/${COMP_WORDS[i]}" in',
        "            " + indent.join(steps),
        "        esac",
        "    done",
        '    case "$cmd" in',
        "        " + "\n        ".join(words),
        "    esac",
        '    case "$cmd $prev" in',
        "        " + "\n        ".join(values),
        "    esac",
        '    if [[ "$cur" == -* ]]; then',
        '        COMPREPLY=($(compgen -W "$flags" -- "$cur"))',
        "    else",
        '        COMPREPLY=($(compgen -W "$subs" -- "$cur"))',
        "    fi",
        "}",
        f"complete -o default -F {fn} {root.name}",
    ]
    return "\n".join(lines) + "\n"


def _fish_text(text: str) -> str:
    first = text.split(". ")[0].split("; ")[0].replace("\n", " ").strip()
    if len(first) > 70:
        first = first[:67].rstrip() + "..."
    return "'" + first.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish(root: Command) -> str:
    prog = root.name
    out = [f"# fish completion for {prog}: `{prog} completion fish > "
           f"~/.config/fish/completions/{prog}.fish`",
           f"complete -c {prog} -f"]

    def emit(command: Command, condition: str) -> None:
        for flag in command.flags:
            parts = [f"complete -c {prog} -n {condition!r}"]
            for name in flag.names:
                parts.append(f"-l {name[2:]}" if name.startswith("--") else f"-s {name[1:]}")
            if flag.choices:
                parts.append(f"-x -a {' '.join(flag.choices)!r}")
            elif flag.path:
                parts.append("-r -F")
            elif flag.takes_value:
                parts.append("-x")
            if flag.help:
                parts.append(f"-d {_fish_text(flag.help)}")
            out.append(" ".join(parts))
        names = " ".join(sub.name for sub in command.commands)
        for sub in command.commands:
            out.append(f"complete -c {prog} -n {_fish_at(condition, names)!r} -a {sub.name}"
                       + (f" -d {_fish_text(sub.help)}" if sub.help else ""))
            emit(sub, f"__fish_seen_subcommand_from {sub.name}"
                 if condition == "__fish_use_subcommand"
                 else f"{condition}; and __fish_seen_subcommand_from {sub.name}")

    emit(root, "__fish_use_subcommand")
    return "\n".join(out) + "\n"


def _fish_at(condition: str, names: str) -> str:
    """The condition under which a command's subcommands are offered."""
    if condition == "__fish_use_subcommand":
        return condition
    return f"{condition}; and not __fish_seen_subcommand_from {names}"
