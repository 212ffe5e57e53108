"""System config values of an installation: through occ, and through PHP as
the owner of config.php where occ refuses.

The next Nextcloud (server PR 56754) registers only `maintenance:mode` and
`status` while maintenance mode is on: `config:list`, `config:system:*` and
`maintenance:data-fingerprint` are then undefined - exactly when the hooks
need them.  So every value is read and written through occ first, and when
occ answers that the command does not exist, by a small constant PHP program
that does what lib/private/Config.php does: read config.php and the
*.config.php files merged, or rewrite config.php under an exclusive lock
(refusing a read-only config, an unread config and a full disk, like
Nextcloud).  Only config.php itself is rewritten, not the merged values.
"""

from __future__ import annotations

import hashlib
import json
import re
import time

from ..errors import ConfigError, DbpipeError
from ..log import log
from ..process import run
from .installation import Installation, php_environment
from .occ import DEFAULT_TIMEOUT, CommandUnavailable, Occ, OccError, occ_message, parse_json

# DataFingerprint::execute() of later releases: "Updated data-fingerprint to <md5>"
_FINGERPRINT = re.compile(r"Updated data-fingerprint to ([0-9a-f]{32})")

# Config::readData(): config.php first, then config/*.config.php in natural
# order, later files winning; each read under a shared lock.  Unlike
# Nextcloud we fail on an unreadable config.php instead of skipping it.
READ_CONFIG_PHP = r"""
function dbpipe_read_config(string $dir): array {
    $files = [$dir . 'config.php'];
    $extra = glob($dir . '*.config.php');
    if (is_array($extra)) { natsort($extra); $files = array_merge($files, $extra); }
    $merged = [];
    foreach ($files as $file) {
        unset($CONFIG);
        $handle = @fopen($file, 'r');
        if ($handle === false) { fwrite(STDERR, "Could not open the config file $file\n"); exit(3); }
        flock($handle, LOCK_SH);
        ob_start();
        include $file;
        ob_end_clean();
        flock($handle, LOCK_UN);
        fclose($handle);
        if (isset($CONFIG) && is_array($CONFIG)) { $merged = array_merge($merged, $CONFIG); }
    }
    return $merged;
}
$dir = rtrim($argv[1], '/') . '/config/';
"""
PRINT_CONFIG_PHP = READ_CONFIG_PHP + r"""
echo json_encode(['system' => dbpipe_read_config($dir)],
                 JSON_INVALID_UTF8_SUBSTITUTE | JSON_PARTIAL_OUTPUT_ON_ERROR);
"""
# config.php alone, as the web server and a backup of config/ will see it there
PRINT_CONFIG_FILE_PHP = r"""
$file = rtrim($argv[1], '/') . '/config/config.php';
$handle = @fopen($file, 'r');
if ($handle === false) { fwrite(STDERR, "Could not open the config file $file\n"); exit(3); }
flock($handle, LOCK_SH);
unset($CONFIG);
ob_start();
include $file;
ob_end_clean();
flock($handle, LOCK_UN);
fclose($handle);
echo json_encode(['system' => (isset($CONFIG) && is_array($CONFIG)) ? $CONFIG : []],
                 JSON_INVALID_UTF8_SUBSTITUTE | JSON_PARTIAL_OUTPUT_ON_ERROR);
"""
# Config::writeData(), for one key of config.php: argv root, set|delete, key, JSON value.
WRITE_CONFIG_PHP = READ_CONFIG_PHP + r"""
function dbpipe_fail(string $message) { fwrite(STDERR, $message . "\n"); exit(3); }
$readOnly = getenv('NC_config_is_read_only');
$merged = dbpipe_read_config($dir);
if ($readOnly !== false ? $readOnly : ($merged['config_is_read_only'] ?? false)) {
    dbpipe_fail('Config is set to be read-only via option "config_is_read_only".');
}
$file = $dir . 'config.php';
$handle = @fopen($file, 'r+');
if ($handle === false) { dbpipe_fail("Can't write into config directory!"); }
if (!flock($handle, LOCK_EX)) { dbpipe_fail("Could not acquire an exclusive lock on the config file $file"); }
unset($CONFIG);
ob_start();
include $file;
ob_end_clean();
if (!isset($CONFIG) || !is_array($CONFIG) || (!isset($CONFIG['version']) && !is_file($dir . 'CAN_INSTALL'))) {
    dbpipe_fail("Configuration was not read or initialized correctly, not overwriting $file");
}
if ($argv[2] === 'set') { $CONFIG[$argv[3]] = json_decode($argv[4], true); } else { unset($CONFIG[$argv[3]]); }
$content = "<?php\n\$CONFIG = " . var_export($CONFIG, true) . ";\n";
$free = @disk_free_space($dir);
if ($free !== false && $free < strlen($content) + 10240) {
    dbpipe_fail("This can not be done as there is not enough free space to write $file");
}
ftruncate($handle, 0);
rewind($handle);
fwrite($handle, $content);
fflush($handle);
flock($handle, LOCK_UN);
fclose($handle);
@chmod($file, 0640);
if (function_exists('opcache_invalidate')) { @opcache_invalidate($file, true); }
"""


class SystemConfig:
    """One installation's system config, through occ or PHP."""

    def __init__(self, occ: Occ):
        self.occ = occ

    @property
    def installation(self) -> Installation:
        return self.occ.installation

    def values(self) -> dict:
        """config:list system: the merged config."""
        try:
            return self.occ.system_config()
        except CommandUnavailable as exc:
            self._falling_back(exc)
        return read_with_php(self.installation, self.occ.timeout)

    def file_values(self) -> dict:
        """config.php alone, read by PHP: what a copy of config/ will hold,
        whatever *.config.php or NC_* say on top."""
        return read_with_php(self.installation, self.occ.timeout, PRINT_CONFIG_FILE_PHP)

    def set(self, key: str, value: bool | str) -> None:
        try:
            if isinstance(value, bool):
                self.occ.run("config:system:set", key, f"--value={'true' if value else 'false'}",
                             "--type=boolean")
            else:
                self.occ.run("config:system:set", key, f"--value={value}")
            return
        except CommandUnavailable as exc:
            self._falling_back(exc)
        self._write("set", key, value)

    def delete(self, key: str) -> None:
        try:
            self.occ.run("config:system:delete", key)
            return
        except CommandUnavailable as exc:
            self._falling_back(exc)
        self._write("delete", key, None)

    def new_fingerprint(self) -> str:
        """maintenance:data-fingerprint; where it is undefined, the same value
        Nextcloud sets (md5 of the current Unix time), written by PHP.  Some
        releases print the new value, others print nothing: then it is read
        back."""
        try:
            said = _FINGERPRINT.search(self.occ.run("maintenance:data-fingerprint").stdout)
            return said.group(1) if said else str(self.values().get("data-fingerprint") or "?")
        except CommandUnavailable as exc:
            self._falling_back(exc)
        value = hashlib.md5(str(int(time.time())).encode()).hexdigest()
        self._write("set", "data-fingerprint", value)
        return value

    def _falling_back(self, exc: DbpipeError) -> None:
        log.info("%s; doing it with PHP as the owner of config.php", exc)

    def _write(self, action: str, key: str, value) -> None:
        inst = self.installation
        argv = [inst.php, "-r", WRITE_CONFIG_PHP, "--", inst.root, action, key, json.dumps(value)]
        result = run(argv, timeout=self.occ.timeout, env_extra=php_environment(),
                     run_as=inst.run_as(), cwd=inst.root)
        if result.code != 0:
            message = occ_message(result.stderr + "\n" + result.stdout) or f"exit {result.code}"
            raise OccError(f"cannot {action} {key} in {inst.config_file}: {message}")
        log.debug("%s %s in %s with PHP", action, key, inst.config_file)


def read_with_php(installation: Installation, timeout: float = DEFAULT_TIMEOUT,
                  program: str = PRINT_CONFIG_PHP) -> dict:
    """The merged config as Nextcloud reads it, without occ (or, with
    PRINT_CONFIG_FILE_PHP, config.php alone)."""
    argv = [installation.php, "-r", program, "--", installation.root]
    result = run(argv, timeout=timeout, env_extra=php_environment(),
                 run_as=installation.run_as(), cwd=installation.root)
    if result.code != 0:
        message = occ_message(result.stderr + "\n" + result.stdout) or f"exit {result.code}"
        raise ConfigError(f"cannot read the Nextcloud config in {installation.config_dir}: {message}")
    try:
        system = parse_json(result.stdout, "reading config.php").get("system")
    except DbpipeError as exc:
        raise ConfigError(str(exc)) from None
    return system if isinstance(system, dict) else {}

