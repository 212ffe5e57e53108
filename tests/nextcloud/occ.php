<?php
/**
 * A faithful test double of Nextcloud's `occ` console (Nextcloud itself cannot
 * be installed on the test machine).  Copied into every sample installation as
 * <root>/occ and run with Debian's php-cli, exactly like the real one.
 *
 * What it reproduces (see shared/reference/nextcloud.md, sections 2.2-2.6):
 * - console.php's owner check: refuses unless the caller owns config/config.php,
 *   with the real message, exit 1;
 * - Config::readData(): config.php, then config/*.config.php in natsort order,
 *   merged; getValue() prefers NC_<key> from the environment;
 * - Config::writeData(): the merged cache var_export()ed into config.php under
 *   LOCK_EX, chmod 0640; refuses when config_is_read_only is set;
 * - commands: status, maintenance:mode, maintenance:data-fingerprint,
 *   config:list, config:system:get|set|delete, files:scan (an app command:
 *   unavailable in maintenance mode);
 * - Symfony's error rendering ("In X.php line N:" + message) and exit 1;
 * - two command sets: today's, and the next Nextcloud's (server PR 56754),
 *   which registers only maintenance:mode and status while maintenance mode is
 *   on, so any other command is "not defined" there (Symfony's messages).
 *
 * Test instruments (files in the installation, as the environment is scrubbed):
 * - occ-calls.log: one JSON line per call {uid, maintenance, args};
 * - files-scan.log: one line per scanned user;
 * - occ-maintenance-commands: when present, the only commands registered while
 *   maintenance mode is on, one per line (the next Nextcloud's variant);
 * - occ-fail.json: [{"match": "maintenance:mode --on", "action": "fail"|"hang"|"pause",
 *   "skip": N, "times": M, "message": "..."}] makes matching calls fail (after N
 *   passes, M times); "pause" instead waits until the file occ-resume exists
 *   (at most "seconds") and then runs the command normally;
 *   match = the command name plus options/arguments the call must contain.
 */

const CODE_VERSION = '29.0.4.1';
const VERSION_STRING = '29.0.4';
const MASK = '***REMOVED SENSITIVE VALUE***';
const SENSITIVE = ['instanceid', 'datadirectory', 'dbname', 'dbhost', 'dbpassword', 'dbuser',
    'mail_smtpname', 'mail_smtppassword', 'passwordsalt', 'secret', 'updater.secret'];

$ROOT = __DIR__;
$CONFIG_DIR = $ROOT . '/config/';
$CONFIG_FILE = $CONFIG_DIR . 'config.php';

class OccFailure extends Exception {
    public string $where;
    public function __construct(string $message, string $where = 'Config.php line 287') {
        parent::__construct($message);
        $this->where = $where;
    }
}

/* --- console.php ------------------------------------------------------------ */

function check_owner(string $configFile): void {
    if (!function_exists('posix_getuid')) {
        echo "The posix extensions are required - see https://www.php.net/manual/en/book.posix.php" . PHP_EOL;
        exit(1);
    }
    $user = posix_getuid();
    $configUser = @fileowner($configFile);
    if ($user !== $configUser) {
        echo "Console has to be executed with the user that owns the file config/config.php" . PHP_EOL;
        echo "Current user id: " . $user . PHP_EOL;
        echo "Owner id of config.php: " . $configUser . PHP_EOL;
        echo "Try adding 'sudo -u #" . $configUser . "' to the beginning of the command (without the single quotes)" . PHP_EOL;
        echo "If running with 'docker exec' try adding the option '-u " . $configUser . "' to the docker command (without the single quotes)" . PHP_EOL;
        exit(1);
    }
}

/* --- lib/private/Config.php --------------------------------------------------- */

class Config {
    public array $cache = [];

    public function __construct(private string $dir) {
        $this->read();
    }

    private function read(): void {
        $main = $this->dir . 'config.php';
        $files = [$main];
        $extra = glob($this->dir . '*.config.php');
        if (is_array($extra)) {
            natsort($extra);
            $files = array_merge($files, $extra);
        }
        foreach ($files as $file) {
            unset($CONFIG);
            $pointer = (file_exists($file) && is_readable($file)) ? fopen($file, 'r') : false;
            if ($file === $main && $pointer === false) {
                continue;  // the real Config skips an unopenable config.php
            }
            if ($pointer === false) {
                throw new OccFailure(sprintf('Could not open the config file %s', $file), 'Config.php line 222');
            }
            flock($pointer, LOCK_SH);
            include $file;
            flock($pointer, LOCK_UN);
            fclose($pointer);
            if (isset($CONFIG) && is_array($CONFIG)) {
                $this->cache = array_merge($this->cache, $CONFIG);
            }
        }
    }

    public function getValue(string $key, $default = null) {
        $env = getenv('NC_' . $key);
        if ($env !== false) {
            return $env;
        }
        return array_key_exists($key, $this->cache) ? $this->cache[$key] : $default;
    }

    public function setValue(string $key, $value): void {
        if (!array_key_exists($key, $this->cache) || $this->cache[$key] !== $value) {
            $this->cache[$key] = $value;
            $this->write();
        }
    }

    public function deleteKey(string $key): void {
        if (array_key_exists($key, $this->cache)) {
            unset($this->cache[$key]);
            $this->write();
        }
    }

    private function write(): void {
        if ($this->getValue('config_is_read_only', false)) {
            throw new OccFailure('Config is set to be read-only via option "config_is_read_only".');
        }
        $file = $this->dir . 'config.php';
        if (!is_file($this->dir . 'CAN_INSTALL') && !isset($this->cache['version'])) {
            throw new OccFailure(sprintf('Configuration was not read or initialized correctly, not overwriting %s', $file));
        }
        $content = "<?php\n\$CONFIG = " . var_export($this->cache, true) . ";\n";
        @touch($file);
        $pointer = @fopen($file, 'r+');
        @chmod($file, 0640);
        if (!is_resource($pointer)) {
            throw new OccFailure("Can't write into config directory!");
        }
        if (!flock($pointer, LOCK_EX)) {
            throw new OccFailure(sprintf('Could not acquire an exclusive lock on the config file %s', $file));
        }
        ftruncate($pointer, 0);
        fwrite($pointer, $content);
        fflush($pointer);
        flock($pointer, LOCK_UN);
        fclose($pointer);
    }
}

/* --- argv ------------------------------------------------------------------------ */

function parse_argv(array $argv): array {
    $valued = ['output', 'value', 'type', 'path', 'default-value'];
    $command = null;
    $args = [];
    $options = [];
    $words = array_slice($argv, 1);
    $onlyArgs = false;
    for ($i = 0; $i < count($words); $i++) {
        $word = $words[$i];
        if ($onlyArgs || $word === '' || $word[0] !== '-') {
            if ($command === null) { $command = $word; } else { $args[] = $word; }
        } elseif ($word === '--') {
            $onlyArgs = true;
        } elseif (str_starts_with($word, '--')) {
            $parts = explode('=', substr($word, 2), 2);
            if (count($parts) === 1 && in_array($parts[0], $valued, true) && isset($words[$i + 1])) {
                $parts[] = $words[++$i];
            }
            $options[$parts[0]] = $parts[1] ?? true;
        } else {
            $options[ltrim($word, '-')] = true;
        }
    }
    return [$command, $args, $options];
}

function write_out(array $data, string $format): void {
    if ($format === 'json') {
        echo json_encode($data) . PHP_EOL;
    } elseif ($format === 'json_pretty') {
        echo json_encode($data, JSON_PRETTY_PRINT) . PHP_EOL;
    } else {
        foreach ($data as $key => $value) {
            echo '  - ' . $key . ': ' . (is_bool($value) ? ($value ? 'true' : 'false') : json_encode($value)) . PHP_EOL;
        }
    }
}

/* --- instruments ---------------------------------------------------------------- */

function log_call(string $root, bool $maintenance, array $argv): void {
    $line = json_encode(['uid' => posix_getuid(), 'maintenance' => $maintenance, 'args' => array_slice($argv, 1)]);
    file_put_contents($root . '/occ-calls.log', $line . PHP_EOL, FILE_APPEND | LOCK_EX);
}

function simulated_failure(string $root, string $command, array $args): void {
    $rulesFile = $root . '/occ-fail.json';
    if (!is_file($rulesFile)) {
        return;
    }
    $rules = json_decode(file_get_contents($rulesFile), true) ?: [];
    $counterFile = $root . '/occ-fail.count';
    $counts = is_file($counterFile) ? (json_decode(file_get_contents($counterFile), true) ?: []) : [];
    $call = trim($command . ' ' . implode(' ', $args));
    foreach ($rules as $index => $rule) {
        $words = explode(' ', $rule['match']);
        if ($words[0] !== $command || array_diff(array_slice($words, 1), $args)) {
            continue;
        }
        $counts[$index] = ($counts[$index] ?? 0) + 1;
        file_put_contents($counterFile, json_encode($counts));
        $skip = $rule['skip'] ?? 0;
        if ($counts[$index] <= $skip || $counts[$index] > $skip + ($rule['times'] ?? PHP_INT_MAX - $skip)) {
            continue;
        }
        $action = $rule['action'] ?? 'fail';
        if ($action === 'pause') {
            $until = time() + ($rule['seconds'] ?? 120);
            while (!is_file($root . '/occ-resume') && time() < $until) {
                usleep(50000);
            }
            continue;
        }
        if ($action === 'hang') {
            sleep($rule['seconds'] ?? 3600);
        }
        throw new OccFailure($rule['message'] ?? "Simulated failure of $call", 'Simulated.php line 1');
    }
}

/* --- commands ------------------------------------------------------------------- */

function needs_upgrade(Config $config): bool {
    return version_compare(CODE_VERSION, (string)$config->getValue('version', '0.0.0'), '>');
}

function maintenance_on(Config $config): bool {
    return filter_var($config->getValue('maintenance', false), FILTER_VALIDATE_BOOLEAN);
}

function cmd_status(Config $config, array $options): int {
    $data = [
        'installed' => (bool)$config->getValue('installed', false),
        'version' => CODE_VERSION,
        'versionstring' => VERSION_STRING,
        'edition' => '',
        'maintenance' => maintenance_on($config),
        'needsDbUpgrade' => needs_upgrade($config),
        'productname' => 'Nextcloud',
        'extendedSupport' => false,
    ];
    if (isset($options['e']) || isset($options['exit-code'])) {
        return $data['maintenance'] ? 1 : ($data['needsDbUpgrade'] ? 2 : 0);
    }
    write_out($data, $options['output'] ?? 'plain');
    return 0;
}

function cmd_maintenance_mode(Config $config, array $options): int {
    $on = maintenance_on($config);
    if (isset($options['on'])) {
        if (!$on) {
            $config->setValue('maintenance', true);
            echo 'Maintenance mode enabled' . PHP_EOL;
        } else {
            echo 'Maintenance mode already enabled' . PHP_EOL;
        }
    } elseif (isset($options['off'])) {
        if ($on) {
            $config->setValue('maintenance', false);
            echo 'Maintenance mode disabled' . PHP_EOL;
        } else {
            echo 'Maintenance mode already disabled' . PHP_EOL;
        }
    } elseif (isset($options['check-if-disabled'])) {
        return $on ? 1 : 0;
    } else {
        echo 'Maintenance mode is currently ' . ($on ? 'enabled' : 'disabled') . PHP_EOL;
    }
    return 0;
}

function cmd_data_fingerprint(Config $config): int {
    $fingerPrint = md5((string)time());
    $config->setValue('data-fingerprint', $fingerPrint);
    echo 'Updated data-fingerprint to ' . $fingerPrint . PHP_EOL;
    return 0;
}

function cmd_config_list(Config $config, array $args, array $options): int {
    if (($args[0] ?? 'all') !== 'system' && ($args[0] ?? 'all') !== 'all') {
        write_out(['apps' => []], $options['output'] ?? 'json_pretty');
        return 0;
    }
    $system = [];
    foreach (array_keys($config->cache) as $key) {
        $value = $config->getValue($key);
        $system[$key] = (!isset($options['private']) && in_array($key, SENSITIVE, true)) ? MASK : $value;
    }
    write_out(['system' => $system], $options['output'] ?? 'json_pretty');
    return 0;
}

function cmd_system_get(Config $config, array $args, array $options): int {
    $value = $config->getValue($args[0] ?? '');
    if ($value === null) {
        if (isset($options['default-value'])) {
            echo $options['default-value'] . PHP_EOL;
            return 0;
        }
        return 1;
    }
    echo (($options['output'] ?? 'plain') === 'plain' && !is_array($value))
        ? (is_bool($value) ? ($value ? 'true' : 'false') : $value) . PHP_EOL
        : json_encode($value) . PHP_EOL;
    return 0;
}

function cmd_system_set(Config $config, array $args, array $options): int {
    $name = $args[0] ?? '';
    $raw = (string)($options['value'] ?? '');
    $type = $options['type'] ?? 'string';
    $value = match ($type) {
        'boolean' => filter_var($raw, FILTER_VALIDATE_BOOLEAN),
        'integer' => (int)$raw,
        default => $raw,
    };
    $config->setValue($name, $value);
    echo "System config value $name set to $type " . (is_bool($value) ? ($value ? 'true' : 'false') : $value) . PHP_EOL;
    return 0;
}

function cmd_system_delete(Config $config, array $args): int {
    $config->deleteKey($args[0] ?? '');
    echo 'System config value ' . ($args[0] ?? '') . ' deleted' . PHP_EOL;
    return 0;
}

function cmd_files_scan(Config $config, string $root, array $args, array $options): int {
    $data = rtrim((string)$config->getValue('datadirectory', $root . '/data'), '/');
    $known = array_values(array_filter(scandir($data) ?: [], fn($u) => $u[0] !== '.' && is_dir("$data/$u/files")));
    if (isset($options['all'])) {
        $users = $known;
    } elseif ($args) {
        $users = $args;
    } else {
        throw new OccFailure('Please specify the user id to scan, --all to scan for all users or --path=...', 'Scan.php line 166');
    }
    $count = 0;
    foreach ($users as $user) {
        $count++;
        if (!in_array($user, $known, true)) {
            echo "Unknown user $count $user" . PHP_EOL;
            continue;
        }
        echo "Starting scan for user $count out of " . count($users) . " ($user)" . PHP_EOL;
        file_put_contents($root . '/files-scan.log', $user . PHP_EOL, FILE_APPEND | LOCK_EX);
    }
    return 0;
}

/* --- Symfony's Application::find() for an unregistered command ------------------ */

function maintenance_commands(string $root): ?array {
    $file = $root . '/occ-maintenance-commands';
    return is_file($file) ? array_values(array_filter(array_map('trim', file($file)))) : null;
}

function undefined_command(string $command, array $registered): OccFailure {
    $pos = strrpos($command, ':');
    if ($pos !== false) {
        $namespace = substr($command, 0, $pos);
        if (!array_filter($registered, fn($c) => str_starts_with($c, $namespace . ':'))) {
            return new OccFailure("There are no commands defined in the \"$namespace\" namespace.",
                                  'Application.php line 661');
        }
    }
    return new OccFailure("Command \"$command\" is not defined.", 'Application.php line 737');
}

function render_failure(OccFailure $failure, string $usage): void {
    $message = '  ' . $failure->getMessage() . '  ';
    $pad = str_repeat(' ', strlen($message));
    fwrite(STDERR, PHP_EOL . "In {$failure->where}:" . PHP_EOL . $pad . PHP_EOL . $message . PHP_EOL . $pad
        . PHP_EOL . PHP_EOL . $usage . PHP_EOL . PHP_EOL);
}

/* --- main ------------------------------------------------------------------------ */

check_owner($CONFIG_FILE);
[$command, $args, $options] = parse_argv($argv);
$command = $command ?? 'list';
try {
    $config = new Config($CONFIG_DIR);
    $inMaintenance = maintenance_on($config);
    log_call($ROOT, $inMaintenance, $argv);
    simulated_failure($ROOT, $command, array_merge(array_map(fn($k) => "--$k", array_keys($options)), $args));
    $registered = $inMaintenance ? maintenance_commands($ROOT) : null;
    if ($registered !== null && !in_array($command, $registered, true)) {
        throw undefined_command($command, $registered);
    }
    if (str_starts_with($command, 'files:') && $inMaintenance) {
        if (!isset($options['no-warnings'])) {
            fwrite(STDERR, 'Nextcloud is in maintenance mode, no apps are loaded.' . PHP_EOL);
            fwrite(STDERR, 'Commands provided by apps are unavailable.' . PHP_EOL);
        }
        throw new OccFailure('There are no commands defined in the "files" namespace.', 'Application.php line 670');
    }
    $code = match ($command) {
        'status' => cmd_status($config, $options),
        'maintenance:mode' => cmd_maintenance_mode($config, $options),
        'maintenance:data-fingerprint' => cmd_data_fingerprint($config),
        'config:list' => cmd_config_list($config, $args, $options),
        'config:system:get' => cmd_system_get($config, $args, $options),
        'config:system:set' => cmd_system_set($config, $args, $options),
        'config:system:delete' => cmd_system_delete($config, $args),
        'files:scan' => cmd_files_scan($config, $ROOT, $args, $options),
        default => throw new OccFailure("Command \"$command\" is not defined.", 'Application.php line 737'),
    };
    exit($code);
} catch (OccFailure $failure) {
    render_failure($failure, $command . ' [options] [--] [<args>...]');
    exit(1);
}
