"""Signers for tests: real gpg and ssh-keygen keys (a trusted manager's and an untrusted
intruder's), the trusted keyring and allowed-signers files, and signed or tampered commits.
Used by tests/unit/test_signatures.py and tests/e2e/test_signatures.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from reconciler.repo import signatures

MANAGER, INTRUDER = "manager@example.com", "intruder@example.com"


class Signers:
    """Two OpenPGP keys and two ssh keys, each pair a trusted one (the manager's) and an
    untrusted one (an intruder's); the trusted set as a keyring and an allowed-signers file."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        # gpg-agent's socket lives in GNUPGHOME: a short path keeps it under the 107-byte limit.
        self.gnupghome = Path(tempfile.mkdtemp(prefix="gpg-", dir="/tmp"))
        try:
            self._make(root)
        except BaseException:
            self.close()
            raise

    def _make(self, root: Path) -> None:
        self.fingerprints: dict[str, str] = {}
        for name, email in (("Manager", MANAGER), ("Intruder", INTRUDER)):
            self._gpg("--passphrase", "", "--quick-gen-key", f"{name} <{email}>", "ed25519",
                      "sign", "never")
            listing = self._gpg("--with-colons", "--list-keys", email)
            self.fingerprints[email] = next(line.split(":")[9] for line in listing.splitlines()
                                            if line.startswith("fpr:"))
        self.keyring = root / "trusted.asc"
        self.keyring.write_text(self._gpg("--armor", "--export", self.fingerprints[MANAGER]))
        self.binary_keyring = root / "trusted.gpg"
        subprocess.run(["gpg", "--batch", "--homedir", str(self.gnupghome), "--output",
                        str(self.binary_keyring), "--export", self.fingerprints[MANAGER]],
                       check=True, capture_output=True)
        self.ssh_keys: dict[str, Path] = {}
        self.ssh_fingerprints: dict[str, str] = {}
        for email in (MANAGER, INTRUDER):
            key = root / f"id_{email.split('@')[0]}"
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", email, "-f",
                            str(key)], check=True, capture_output=True)
            self.ssh_keys[email] = key
            listed = subprocess.run(["ssh-keygen", "-l", "-f", f"{key}.pub"], check=True,
                                    capture_output=True, text=True).stdout
            self.ssh_fingerprints[email] = listed.split()[1]
        self.allowed_signers = root / "allowed_signers"
        public = (root / f"{self.ssh_keys[MANAGER].name}.pub").read_text().strip()
        self.allowed_signers.write_text(f"# the manager's key\n{MANAGER} {public}\n")

    def _gpg(self, *args: str) -> str:
        return subprocess.run(["gpg", "--batch", "--homedir", str(self.gnupghome), *args],
                              check=True, capture_output=True, text=True).stdout

    def trust(self, *, gpg: bool = True, ssh: bool = True,
              binary: bool = False) -> signatures.Trust:
        keyring = self.binary_keyring if binary else self.keyring
        return signatures.Trust(keyring=keyring if gpg else None,
                                allowed_signers=self.allowed_signers if ssh else None)

    def env(self) -> dict[str, str]:
        """git's environment for the manager's commits: nothing of the user's, our keys."""
        return {"GIT_AUTHOR_NAME": "Manager", "GIT_AUTHOR_EMAIL": MANAGER,
                "GIT_COMMITTER_NAME": "Manager", "GIT_COMMITTER_EMAIL": MANAGER,
                "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
                "HOME": "/nonexistent", "PATH": "/usr/bin:/bin",
                "GNUPGHOME": str(self.gnupghome)}

    def git(self, *args: str, cwd: Path, stdin: str | None = None) -> str:
        done = subprocess.run(["git", *args], cwd=cwd, env=self.env(), input=stdin,
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def sign_args(self, key: str | None) -> list[str]:
        """git's arguments to sign with `key`: gpg or ssh, then `:other` for the intruder's;
        None for no signature."""
        if key is None:
            return ["commit"]
        kind, _, who = key.partition(":")
        email = INTRUDER if who == "other" else MANAGER
        if kind == "gpg":
            return ["-c", f"user.signingkey={self.fingerprints[email]}", "commit", "-S"]
        return ["-c", "gpg.format=ssh", "-c", f"user.signingkey={self.ssh_keys[email]}",
                "commit", "-S"]

    def commit(self, work: Path, message: str, *, key: str | None) -> str:
        """Commit everything in `work`, signed with `key` (see `sign_args`)."""
        self.git("add", "-A", cwd=work)
        self.git(*self.sign_args(key), "-q", "--allow-empty", "-m", message, cwd=work)
        return self.git("rev-parse", "HEAD", cwd=work)

    def sign_head(self, work: Path, *, key: str) -> str:
        """Re-make `work`'s head commit (same tree, parents and message) signed with `key`:
        a repository whose history is signed from the start."""
        self.git(*self.sign_args(key), "-q", "--amend", "--no-edit", "--allow-empty",
                 cwd=work)
        return self.git("rev-parse", "HEAD", cwd=work)

    def merge(self, work: Path, branch: str, *, key: str | None, message: str = "Merge",
              options: tuple[str, ...] = ()) -> str:
        """Merge `branch` into `work`'s current branch with a merge commit (never a fast
        forward), signed with `key` (None: unsigned, as a forge's merge button makes)."""
        args = self.sign_args(key)
        args[args.index("commit")] = "merge"
        self.git(*args, "-q", "--no-ff", "--no-edit", "-m", message, *options, branch,
                 cwd=work)
        return self.git("rev-parse", "HEAD", cwd=work)

    def tamper(self, work: Path, *, signed: str, tree_of: str) -> str:
        """A commit that carries `signed`'s headers and signature over `tree_of`'s tree (a
        signature moved onto other content), made the head of `work`'s branch."""
        raw = self.git("cat-file", "commit", signed, cwd=work)
        tree = self.git("rev-parse", f"{tree_of}^{{tree}}", cwd=work)
        lines = raw.split("\n")
        assert lines[0].startswith("tree ")
        forged = "\n".join([f"tree {tree}", *lines[1:]]) + "\n"
        sha = self.git("hash-object", "-t", "commit", "-w", "--stdin", cwd=work, stdin=forged)
        self.git("update-ref", "HEAD", sha, cwd=work)
        self.git("reset", "-q", "--hard", sha, cwd=work)
        return sha

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.gnupghome), "--kill", "all"],
                       capture_output=True, check=False)
        shutil.rmtree(self.gnupghome, ignore_errors=True)
