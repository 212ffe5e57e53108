<?php
/**
 * A test double of Nextcloud's `occ` console (Nextcloud itself cannot be
 * installed on the test machine).  Copied into every sample installation as
 * <root>/occ and run with Debian's php-cli, exactly like the real one.  It must
 * print what real occ prints - stdout, stderr and exit code - for every command
 * and state dbpipe uses, so the hooks are tested against what they will meet.
 *
 * Each behaviour names the source it copies: nextcloud/server (NC) and
 * symfony/console (SF) in the version each Nextcloud line ships, read from
 * nextcloud/3rdparty composer.lock: stable30 symfony/console v6.4.17, stable31
 * v6.4.32, stable32 v6.4.41, master v7.4.15.  The SF functions copied here
 * (Application::find/findNamespace/findAlternatives/renderThrowable/
 * doRenderThrowable/run, ArgvInput::parseToken/addLongOption/
 * parseShortOptionSet/parseArgument, Input::validate,
 * InputDefinition::getSynopsis) read the same in all four.
 *
 * WHICH NEXTCLOUD (the version decides, as in real life):
 * - the code's version is config.php's 'version' (code and database agree), or
 *   the contents of the file occ-code-version in the installation when a test
 *   needs code newer than the database ("needs occ upgrade");
 * - its major number picks the line: 30, 31 or 32;
 * - the file occ-pr56754 (present = yes) makes it the code of nextcloud/server
 *   PR 56754 (master after 32; SF 7.4): core/register_command.php registers
 *   only `_completion`, `status`, `check`, l10n/integrity/router commands and
 *   `maintenance:mode` while maintenance mode is on (and only the installer or
 *   the upgrade commands before installation / when an upgrade is needed), and
 *   Application::writeMaintenanceModeInfo() prints three new lines.
 * The environment is scrubbed by dbpipe, hence files, not variables.
 *
 * Where the lines differ in what dbpipe meets:
 * - DataFingerprint::execute(): two versions exist in nextcloud/server (both
 *   SPDX 2016-2024 headers): one only sets the value, a later one also writes
 *   "Updated data-fingerprint to <md5>".  Which 30.0.x release got the second
 *   is not pinned down here; the double gives line 30 the silent one and 31,
 *   32 and PR 56754 the talking one, so dbpipe meets both.
 * - the maintenance notice (Application::writeMaintenanceModeInfo): 30-32 two
 *   lines, PR 56754 three; the not-installed and needs-upgrade notices too.
 * - `--no-warnings`: 30-32 honour it only when ArgvInput::bind() got that far
 *   (Application::loadCommands binds the global definition and swallows the
 *   RuntimeException an unknown option or a second argument throws, keeping
 *   the options parsed before it); PR 56754 looks anywhere
 *   (hasParameterOption).  Either way it silences the notices, not the error
 *   box (SF renderThrowable writes with VERBOSITY_QUIET).
 *
 * Not reproduced: -v/-q verbosity (no exception title, trace or quiet mode),
 * ANSI colours (a pipe is never a tty: SF StreamOutput::hasColorSupport),
 * OC_Util::checkServer() environment errors, commands dbpipe does not use
 * (registered by name for find(), they exit 70 here; the name lists follow
 * core/register_command.php closely but not completely, so a "Did you mean"
 * list for a mistyped core command may differ), the line numbers of "In
 * File.php line N:" headers (illustrative, they move with every release).
 *
 * Test instruments (files in the installation):
 * - occ-calls.log: one JSON line per call {uid, maintenance, args};
 * - files-scan.log: one line per scanned user;
 * - occ-code-version, occ-pr56754: see above;
 * - occ-php-warning: its text is raised as a PHP E_USER_WARNING with
 *   display_errors on, so PHP itself prints "Warning: ..." on stdout before
 *   any output (what a deprecated or broken app/php.ini does to real occ);
 * - occ-fail.json: [{"match": "maintenance:mode --on", "action": "fail"|"hang"|"pause",
 *   "skip": N, "times": M, "message": "..."}] makes matching calls fail (after N
 *   passes, M times) the way an exception escaping Application::run() fails (SF
 *   box with an "In File.php line N:" header, after the notices, exit 1) - before
 *   the command is looked up, so also for a command this line does not offer;
 *   "pause" instead waits until the file occ-resume exists (at most "seconds")
 *   and then runs the command normally; match = the command name plus the
 *   options (without values) and arguments the call must contain.
 */

const MASK = '***REMOVED SENSITIVE VALUE***';
const SENSITIVE = ['instanceid', 'datadirectory', 'dbname', 'dbhost', 'dbpassword', 'dbuser',
    'mail_smtpname', 'mail_smtppassword', 'passwordsalt', 'secret', 'updater.secret'];
// the code each line runs as (OC_Util::getVersion / getVersionString)
const LINE_CODE = ['30' => ['30.0.16.1', '30.0.16'], '31' => ['31.0.10.2', '31.0.10'],
    '32' => ['32.0.2.2', '32.0.2'], 'pr56754' => ['33.0.0.4', '33.0.0 dev']];

$ROOT = __DIR__;
$CONFIG_DIR = $ROOT . '/config/';
$CONFIG_FILE = $CONFIG_DIR . 'config.php';

/** An exception as Symfony renders it: $symfony = implements SF ExceptionInterface
 * (no "In X line N:" header), $where = basename:line of the real throw. */
class OccFailure extends Exception {
    public array $partial = [];     // options ArgvInput had parsed when it threw

    public function __construct(string $message, public string $where = 'Config.php line 287',
                                public bool $symfony = false, public bool $inCommand = true) {
        parent::__construct($message);
    }
}

/** Thrown before the console application exists: NC console.php's exceptionHandler(). */
class UnhandledFailure extends Exception {
}

function symfony_error(string $message, bool $inCommand): OccFailure {
    return new OccFailure($message, '', true, $inCommand);
}

/* --- console.php ------------------------------------------------------------ */

/** NC console.php: the owner check, on stdout, exit 1 (same text in 30-32 and master). */
function check_owner(string $configFile): void {
    if (!function_exists('posix_getuid')) {
        echo "The posix extensions are required - see https://www.php.net/manual/en/book.posix.php" . PHP_EOL;
        exit(1);
    }
    $user = posix_getuid();
    $configUser = fileowner($configFile);
    if ($user !== $configUser) {
        echo "Console has to be executed with the user that owns the file config/config.php" . PHP_EOL;
        echo "Current user id: " . $user . PHP_EOL;
        echo "Owner id of config.php: " . $configUser . PHP_EOL;
        echo "Try adding 'sudo -u #" . $configUser . "' to the beginning of the command (without the single quotes)" . PHP_EOL;
        echo "If running with 'docker exec' try adding the option '-u " . $configUser . "' to the docker command (without the single quotes)" . PHP_EOL;
        exit(1);
    }
}

/** NC console.php: the PCNTL warning on stdout unless the exact word --no-warnings is in argv. */
function pcntl_warning(array $argv): void {
    if (!(function_exists('pcntl_signal') && function_exists('pcntl_signal_dispatch')) && !in_array('--no-warnings', $argv)) {
        echo "The process control (PCNTL) extensions are required in case you want to interrupt long running commands - see https://www.php.net/manual/en/book.pcntl.php" . PHP_EOL;
        echo "Additionally the function 'pcntl_signal' and 'pcntl_signal_dispatch' need to be enabled in your php.ini." . PHP_EOL;
    }
}

/* --- lib/private/Config.php --------------------------------------------------- */

class Config {
    public array $cache = [];

    public function __construct(private string $dir) {
        $this->read();
    }

    /** NC Config::readData(): config.php, then *.config.php in natsort order, merged. */
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
                throw new UnhandledFailure(sprintf('Could not open the config file %s', $file));
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

    /** NC Config::getValue(): NC_<key> from the environment first. */
    public function getValue(string $key, $default = null) {
        $env = getenv('NC_' . $key);
        if ($env !== false) {
            return $env;
        }
        return array_key_exists($key, $this->cache) ? $this->cache[$key] : $default;
    }

    /** NC Config::setValue()/set(): write only when the value changes. */
    public function setValue(string $key, $value): void {
        if (!array_key_exists($key, $this->cache) || $this->cache[$key] !== $value) {
            $this->cache[$key] = $value;
            $this->write();
        }
    }

    /** NC Config::deleteKey()/delete(). */
    public function deleteKey(string $key): void {
        if (array_key_exists($key, $this->cache)) {
            unset($this->cache[$key]);
            $this->write();
        }
    }

    /** NC Config::writeData() + checkReadOnly(): HintExceptions (header "In Config.php line N:"). */
    private function write(): void {
        if ($this->getValue('config_is_read_only', false)) {
            throw new OccFailure('Config is set to be read-only via option "config_is_read_only".');
        }
        $file = $this->dir . 'config.php';
        if (!is_file($this->dir . 'CAN_INSTALL') && !isset($this->cache['version'])) {
            throw new OccFailure(sprintf('Configuration was not read or initialized correctly, not overwriting %s', $file));
        }
        $content = "<?php\n\$CONFIG = " . var_export($this->cache, true) . ";\n";
        $pointer = @fopen($file, 'r+');
        if ($pointer === false) {
            @touch($file);
            $pointer = @fopen($file, 'r+');
        }
        if ($pointer === false) {
            throw new OccFailure("Can't write into config directory!");
        }
        @chmod($file, 0640);
        $free = @disk_free_space($this->dir);
        if ($free !== false && $free < (float)(strlen($content) + 10240)) {
            throw new OccFailure($this->dir . ' does not have enough space for writing the config file! Not writing it back!');
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

/* --- which Nextcloud -------------------------------------------------------------- */

/** The line this code is (see the header): '30', '31', '32' or 'pr56754'. */
function code_line(string $root, Config $config): array {
    $file = $root . '/occ-code-version';
    $version = is_file($file) ? trim(file_get_contents($file)) : (string)$config->getValue('version', '');
    if (is_file($root . '/occ-pr56754')) {
        return ['pr56754', LINE_CODE['pr56754']];
    }
    $major = explode('.', $version)[0];
    if (!isset(LINE_CODE[$major])) {
        fwrite(STDERR, "occ double: no Nextcloud line for code version '$version' (30, 31, 32 or occ-pr56754)" . PHP_EOL);
        exit(70);
    }
    return [$major, LINE_CODE[$major]];
}

/* --- commands and their input definitions -------------------------------------------
 * A definition: options name => [shortcut, mode] (mode: none|required|optional,
 * as InputOption::VALUE_*), arguments [name, required, array] in order.
 * Base (core/Command/Base.php configure()) adds --output (VALUE_OPTIONAL) first. */

const GLOBAL_OPTIONS_64 = ['help' => ['h', 'none'], 'quiet' => ['q', 'none'], 'verbose' => ['v|vv|vvv', 'none'],
    'version' => ['V', 'none'], 'ansi' => ['', 'negatable'], 'no-interaction' => ['n', 'none']];

function global_options(string $line): array {
    // SF Application::getDefaultInputDefinition(); 7.2+ adds --silent; NC loadCommands adds --no-warnings
    $options = GLOBAL_OPTIONS_64;
    if ($line === 'pr56754') {
        $options = ['help' => $options['help'], 'silent' => ['', 'none']] + $options;
    }
    return $options + ['no-warnings' => ['', 'none']];
}

function base(array $options = [], array $arguments = []): array {
    return ['options' => ['output' => ['', 'optional']] + $options, 'arguments' => $arguments];
}

/** What each reproduced command accepts (NC core/Command/..., apps/files/lib/Command/Scan.php). */
function definitions(): array {
    return [
        'status' => base(['exit-code' => ['e', 'none']]),                            // Status::configure
        'maintenance:mode' => ['options' => ['on' => ['', 'none'], 'off' => ['', 'none'],
            'check-if-disabled' => ['', 'none']], 'arguments' => []],                  // Maintenance/Mode::configure
        'maintenance:data-fingerprint' => ['options' => [], 'arguments' => []],        // DataFingerprint::configure
        'config:list' => base(['private' => ['', 'none']], [['app', false, false]]),     // Config/ListConfigs
        'config:system:get' => base(['default-value' => ['', 'optional']], [['name', true, true]]),
        'config:system:set' => base(['type' => ['', 'required'], 'value' => ['', 'required'],
            'update-only' => ['', 'none']], [['name', true, true]]),                    // Config/System/SetConfig
        'config:system:delete' => base(['error-if-not-exists' => ['', 'none']], [['name', true, true]]),
        'files:scan' => base(['path' => ['p', 'required'], 'generate-metadata' => ['', 'optional'],
            'all' => ['', 'none'], 'unscanned' => ['', 'none'], 'shallow' => ['', 'none'],
            'home-only' => ['', 'none']], [['user_id', false, true]]),
    ];
}

// names only, for Application::find()'s matching and alternatives
const SYMFONY_COMMANDS = ['help', 'list', 'completion', '_complete'];   // SF getDefaultCommands()
const ALWAYS_COMMANDS = ['_completion', 'status', 'check', 'l10n:createjs', 'integrity:sign-app',
    'integrity:sign-core', 'integrity:check-app', 'integrity:check-core'];
const CORE_COMMANDS = ['app:disable', 'app:enable', 'app:getpath', 'app:install', 'app:list', 'app:remove',
    'app:update', 'background:ajax', 'background:cron', 'background:webcron', 'background-job:delete',
    'background-job:execute', 'background-job:list', 'background-job:worker', 'broadcast:test',
    'config:app:delete', 'config:app:get', 'config:app:set', 'config:import', 'config:list',
    'config:system:delete', 'config:system:get', 'config:system:set', 'db:add-missing-columns',
    'db:add-missing-indices', 'db:add-missing-primary-keys', 'db:convert-filecache-bigint',
    'db:convert-mysql-charset', 'db:convert-type', 'encryption:disable', 'encryption:enable',
    'encryption:status', 'group:add', 'group:adduser', 'group:delete', 'group:list', 'info:file',
    'info:space', 'log:file', 'log:manage', 'maintenance:data-fingerprint', 'maintenance:mimetype:update-db',
    'maintenance:mimetype:update-js', 'maintenance:mode', 'maintenance:repair', 'maintenance:repair-share-owner',
    'maintenance:theme:update', 'maintenance:update:htaccess', 'memcache:redis:command', 'preview:cleanup',
    'preview:repair', 'security:bruteforce:attempts', 'setupchecks', 'tag:add', 'twofactorauth:cleanup',
    'upgrade', 'user:add', 'user:delete', 'user:disable', 'user:enable', 'user:info', 'user:lastseen',
    'user:list', 'user:resetpassword', 'user:setting'];
const APP_COMMANDS = ['files:cleanup', 'files:repair-tree', 'files:scan', 'files:scan-app-data',
    'files:transfer-ownership'];                                           // the files app (apps/files/appinfo/info.xml)

/** What is registered in this state: NC core/register_command.php + Application::loadCommands(). */
function registered(string $line, bool $installed, bool $maintenance, bool $needUpgrade): array {
    $always = array_merge(SYMFONY_COMMANDS, ALWAYS_COMMANDS);
    if ($line === 'pr56754') {
        // PR 56754 register_command.php: $alwaysCommands (+ router:*), then by state, then return
        $always = array_merge($always, ['router:list', 'router:match']);
        if ($needUpgrade) {
            return array_merge($always, ['maintenance:mode', 'upgrade']);
        }
        if (!$installed) {
            return array_merge($always, ['maintenance:install']);
        }
        return $maintenance ? array_merge($always, ['maintenance:mode'])
            : array_merge($always, CORE_COMMANDS, APP_COMMANDS);
    }
    // 30-32: every core command once installed; app commands only when apps were
    // loaded (not in maintenance mode, not when an upgrade is needed)
    if (!$installed) {
        return array_merge($always, ['maintenance:install']);
    }
    return array_merge($always, CORE_COMMANDS, ($maintenance || $needUpgrade) ? [] : APP_COMMANDS);
}

/* --- symfony/console: Application::find() and friends ---------------------------- */

/** SF Application::extractAllNamespaces() over all commands (getNamespaces). */
function namespaces(array $commands): array {
    $all = [];
    foreach ($commands as $name) {
        $parts = explode(':', $name);
        array_pop($parts);
        $namespace = '';
        foreach ($parts as $part) {
            $namespace = $namespace === '' ? $part : $namespace . ':' . $part;
            $all[$namespace] = true;
        }
    }
    return array_keys($all);
}

/** SF Application::findAlternatives(). */
function alternatives(string $name, array $collection): array {
    $threshold = 1e3;
    $alternatives = [];
    $collectionParts = [];
    foreach ($collection as $item) {
        $collectionParts[$item] = explode(':', $item);
    }
    foreach (explode(':', $name) as $i => $subname) {
        foreach ($collectionParts as $collectionName => $parts) {
            $exists = isset($alternatives[$collectionName]);
            if (!isset($parts[$i]) && $exists) {
                $alternatives[$collectionName] += $threshold;
                continue;
            } elseif (!isset($parts[$i])) {
                continue;
            }
            $lev = levenshtein($subname, $parts[$i]);
            if ($lev <= strlen($subname) / 3 || '' !== $subname && str_contains($parts[$i], $subname)) {
                $alternatives[$collectionName] = $exists ? $alternatives[$collectionName] + $lev : $lev;
            } elseif ($exists) {
                $alternatives[$collectionName] += $threshold;
            }
        }
    }
    foreach ($collection as $item) {
        $lev = levenshtein($name, $item);
        if ($lev <= strlen($name) / 3 || str_contains($item, $name)) {
            $alternatives[$item] = isset($alternatives[$item]) ? $alternatives[$item] - $lev : $lev;
        }
    }
    $alternatives = array_filter($alternatives, fn($lev) => $lev < 2 * $threshold);
    ksort($alternatives, SORT_NATURAL | SORT_FLAG_CASE);
    return array_map('strval', array_keys($alternatives));
}

function did_you_mean(string $message, array $alternatives): string {
    if (!$alternatives) {
        return $message;
    }
    $message .= count($alternatives) === 1 ? "\n\nDid you mean this?\n    " : "\n\nDid you mean one of these?\n    ";
    return $message . implode("\n    ", $alternatives);
}

function expression(string $name): string {
    return implode('[^:]*:', array_map('preg_quote', explode(':', $name))) . '[^:]*';
}

/** SF Application::findNamespace() (NamespaceNotFoundException). */
function find_namespace(string $namespace, array $commands): void {
    $all = namespaces($commands);
    if (!preg_grep('{^' . expression($namespace) . '}', $all)) {
        throw symfony_error(did_you_mean(sprintf('There are no commands defined in the "%s" namespace.', $namespace),
            alternatives($namespace, $all)), false);
    }
}

/** SF Application::find(): exact name, else an unambiguous abbreviation
 * (CommandNotFoundException; hidden commands left out of the alternatives). */
function find_command(string $name, array $commands): string {
    if (in_array($name, $commands, true)) {
        return $name;
    }
    $expr = expression($name);
    $matches = preg_grep('{^' . $expr . '}', $commands) ?: preg_grep('{^' . $expr . '}i', $commands);
    if (!$matches || count(preg_grep('{^' . $expr . '$}i', $matches)) < 1) {
        if (false !== $pos = strrpos($name, ':')) {
            find_namespace(substr($name, 0, $pos), $commands);
        }
        $alternatives = array_values(array_filter(alternatives($name, $commands), fn($c) => $c[0] !== '_'));
        throw symfony_error(did_you_mean(sprintf('Command "%s" is not defined.', $name), $alternatives), false);
    }
    if (count($matches) > 1) {
        throw symfony_error(sprintf("Command \"%s\" is ambiguous.\nDid you mean one of these?\n%s.", $name,
            implode("\n", array_map(fn($c) => '    ' . $c, $matches))), false);
    }
    return reset($matches);
}

/* --- symfony/console: ArgvInput --------------------------------------------------- */

/** SF ArgvInput::parse()/parseToken()/addLongOption()/parseShortOptionSet()/parseArgument()
 * against a definition; throws what they throw (RuntimeException: SF ExceptionInterface). */
function parse_input(array $tokens, array $options, array $arguments, bool $inCommand, ?string $command): array {
    $shortcuts = [];
    foreach ($options as $name => [$short, $mode]) {
        foreach ($short === '' ? [] : explode('|', $short) as $s) {
            $shortcuts[$s] = $name;
        }
    }
    $values = [];
    $args = [];
    $parseOptions = true;
    $fail = fn(string $m) => symfony_error($m, $inCommand);
    $addLong = function (string $name, ?string $value) use (&$tokens, &$values, $options, $fail) {
        if (!isset($options[$name])) {
            if (str_starts_with($name, 'no-') && ($options[substr($name, 3)][1] ?? '') === 'negatable') {
                if ($value !== null) {
                    throw $fail(sprintf('The "--%s" option does not accept a value.', $name));
                }
                $values[substr($name, 3)] = false;
                return;
            }
            throw $fail(sprintf('The "--%s" option does not exist.', $name));
        }
        $mode = $options[$name][1];
        $accepts = $mode === 'required' || $mode === 'optional';
        if ($value !== null && !$accepts) {
            throw $fail(sprintf('The "--%s" option does not accept a value.', $name));
        }
        if (in_array($value, ['', null], true) && $accepts && count($tokens)) {
            $next = array_shift($tokens);
            if ((isset($next[0]) && '-' !== $next[0]) || in_array($next, ['', null], true)) {
                $value = $next;
            } else {
                array_unshift($tokens, $next);
            }
        }
        if ($value === null) {
            if ($mode === 'required') {
                throw $fail(sprintf('The "--%s" option requires a value.', $name));
            }
            if ($mode !== 'optional') {
                $value = true;
            }
        }
        $values[$name] = $value;
    };
    try {
        parse_tokens($tokens, $parseOptions, $shortcuts, $options, $arguments, $args, $addLong, $fail, $command);
    } catch (OccFailure $failure) {
        $failure->partial = $values;
        throw $failure;
    }
    return [$values, $args];
}

function parse_tokens(array &$tokens, bool $parseOptions, array $shortcuts, array $options, array $arguments,
                      array &$args, callable $addLong, callable $fail, ?string $command): void {
    while (null !== $token = array_shift($tokens)) {
        if ($parseOptions && $token === '--') {
            $parseOptions = false;
        } elseif ($parseOptions && str_starts_with($token, '--')) {
            $parts = explode('=', substr($token, 2), 2);
            $addLong($parts[0], $parts[1] ?? null);
        } elseif ($parseOptions && $token !== '' && $token[0] === '-' && $token !== '-') {
            $set = substr($token, 1);
            for ($i = 0; $i < strlen($set); $i++) {
                $name = $shortcuts[$set[$i]] ?? null;
                if ($name === null) {
                    throw $fail(sprintf('The "-%s" option does not exist.', $set[$i]));
                }
                if (in_array($options[$name][1], ['required', 'optional'], true)) {
                    $addLong($name, $i === strlen($set) - 1 ? null : substr($set, $i + 1));
                    break;
                }
                $addLong($name, null);
            }
        } else {
            $c = count($args);
            if (isset($arguments[$c])) {
                $args[] = $arguments[$c][2] ? [$token] : $token;
            } elseif ($c > 0 && $arguments[$c - 1][2]) {
                $args[$c - 1][] = $token;
            } else {
                $expected = array_slice(array_column($arguments, 0), 1);
                throw $fail($expected
                    ? sprintf('Too many arguments to "%s" command, expected arguments "%s".', $command, implode('" "', $expected))
                    : ($command !== null ? sprintf('No arguments expected for "%s" command, got "%s".', $command, $token)
                        : sprintf('No arguments expected, got "%s".', $token)));
            }
        }
    }
}

/** SF Input::validate(): required arguments. */
function validate_input(array $args, array $arguments): void {
    $missing = [];
    foreach ($arguments as $i => [$name, $required]) {
        if ($required && !array_key_exists($i, $args)) {
            $missing[] = $name;
        }
    }
    if ($missing) {
        throw symfony_error(sprintf('Not enough arguments (missing: "%s").', implode(', ', $missing)), true);
    }
}

/** SF InputDefinition::getSynopsis() of the command's own definition (Command::getSynopsis). */
function synopsis(string $command, array $definition): string {
    $elements = [];
    foreach ($definition['options'] as $name => [$short, $mode]) {
        $value = $mode === 'required' ? ' ' . strtoupper($name) : ($mode === 'optional' ? ' [' . strtoupper($name) . ']' : '');
        $elements[] = sprintf('[%s--%s%s]', $short !== '' ? "-$short|" : '', $name, $value);
    }
    if ($elements && $definition['arguments']) {
        $elements[] = '[--]';
    }
    $tail = '';
    foreach ($definition['arguments'] as [$name, $required, $array]) {
        $element = '<' . $name . '>' . ($array ? '...' : '');
        if (!$required) {
            $element = '[' . $element;
            $tail .= ']';
        }
        $elements[] = $element;
    }
    return trim($command . ' ' . implode(' ', $elements) . $tail);
}

/* --- symfony/console: rendering a failure --------------------------------------------- */

/** SF Application::renderThrowable() + doRenderThrowable() at normal verbosity on a
 * 80-column non-tty (Terminal::getWidth(): no COLUMNS, stty fails -> 80): an empty
 * line, the header only for exceptions that are not SF ExceptionInterface, the
 * padded box (lines split at width-1-4), an empty line, then the running
 * command's synopsis and an empty line; all on stderr (getErrorOutput). */
function render_failure(OccFailure $failure, ?string $synopsis): void {
    $lines = [];
    $len = 0;
    foreach (preg_split('/\r?\n/', trim($failure->getMessage())) as $line) {
        foreach ($line === '' ? [''] : str_split($line, 80 - 1 - 4) as $piece) {
            $lines[] = $piece;
            $len = max(strlen($piece) + 4, $len);
        }
    }
    $out = PHP_EOL;
    if (!$failure->symfony) {
        $out .= "In {$failure->where}:" . PHP_EOL;
    }
    $empty = str_repeat(' ', $len);
    $out .= $empty . PHP_EOL;
    foreach ($lines as $line) {
        $out .= '  ' . $line . '  ' . str_repeat(' ', $len - strlen($line) - 4) . PHP_EOL;
    }
    $out .= $empty . PHP_EOL . PHP_EOL;
    if ($synopsis !== null) {
        $out .= $synopsis . PHP_EOL . PHP_EOL;
    }
    fwrite(STDERR, $out);
}

/* --- NC core/Command/Base.php: output formats ------------------------------------- */

/** Base::valueToString(). */
function value_to_string($value): ?string {
    return $value === false ? 'false' : ($value === true ? 'true' : ($value === null ? null : (string)$value));
}

/** Base::writeArrayInOutputFormat(): json / json_pretty / plain ("  - key: value"). */
function write_out(array $data, ?string $format, string $prefix = '  - '): void {
    if ($format === 'json') {
        echo json_encode($data) . PHP_EOL;
    } elseif ($format === 'json_pretty') {
        echo json_encode($data, JSON_PRETTY_PRINT) . PHP_EOL;
    } else {
        foreach ($data as $key => $item) {
            if (is_iterable($item)) {
                echo $prefix . $key . ':' . PHP_EOL;
                write_out($item, $format, '  ' . $prefix);
                continue;
            }
            $value = value_to_string($item);
            echo $prefix . (is_int($key) ? $value : $key . ($value === null ? '' : ': ' . $value)) . PHP_EOL;
        }
    }
}

/* --- instruments ---------------------------------------------------------------- */

function log_call(string $root, bool $maintenance, array $argv): void {
    $line = json_encode(['uid' => posix_getuid(), 'maintenance' => $maintenance, 'args' => array_slice($argv, 1)]);
    file_put_contents($root . '/occ-calls.log', $line . PHP_EOL, FILE_APPEND | LOCK_EX);
}

function php_warning(string $root): void {
    $file = $root . '/occ-php-warning';
    if (is_file($file)) {
        ini_set('display_errors', '1');
        ini_set('log_errors', '0');
        trigger_error(trim(file_get_contents($file)), E_USER_WARNING);
    }
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

function needs_upgrade(string $code, Config $config): bool {
    // OCP\Util::needUpgrade(): the code is newer than the installed version
    return (bool)$config->getValue('installed', false)
        && version_compare($code, (string)$config->getValue('version', '0.0.0'), '>');
}

function maintenance_on(Config $config): bool {
    return filter_var($config->getValue('maintenance', false), FILTER_VALIDATE_BOOLEAN);
}

/** NC core/Command/Status.php execute(): -e is silent and exits 1 (maintenance) / 2 (upgrade). */
function cmd_status(Config $config, array $code, bool $needUpgrade, array $options): int {
    $data = [
        'installed' => filter_var($config->getValue('installed', false), FILTER_VALIDATE_BOOLEAN),
        'version' => $code[0],
        'versionstring' => $code[1],
        'edition' => '',
        'maintenance' => maintenance_on($config),
        'needsDbUpgrade' => $needUpgrade,
        'productname' => 'Nextcloud',
        'extendedSupport' => false,
    ];
    if (empty($options['exit-code'])) {
        write_out($data, $options['output'] ?? 'plain');
        return 0;
    }
    return $data['maintenance'] ? 1 : ($needUpgrade ? 2 : 0);
}

/** NC core/Command/Maintenance/Mode.php execute(). */
function cmd_maintenance_mode(Config $config, array $options): int {
    $on = maintenance_on($config);
    if (!empty($options['on'])) {
        if (!$on) {
            $config->setValue('maintenance', true);
            echo 'Maintenance mode enabled' . PHP_EOL;
        } else {
            echo 'Maintenance mode already enabled' . PHP_EOL;
        }
    } elseif (!empty($options['off'])) {
        if ($on) {
            $config->setValue('maintenance', false);
            echo 'Maintenance mode disabled' . PHP_EOL;
        } else {
            echo 'Maintenance mode already disabled' . PHP_EOL;
        }
    } elseif (!empty($options['check-if-disabled'])) {
        return $on ? 1 : 0;
    } else {
        echo 'Maintenance mode is currently ' . ($on ? 'enabled' : 'disabled') . PHP_EOL;
    }
    return 0;
}

/** NC core/Command/Maintenance/DataFingerprint.php execute(): md5 of the Unix time;
 * the later version also says so (see the header). */
function cmd_data_fingerprint(Config $config, string $line): int {
    $fingerPrint = md5((string)time());
    $config->setValue('data-fingerprint', $fingerPrint);
    if ($line !== '30') {
        echo 'Updated data-fingerprint to ' . $fingerPrint . PHP_EOL;
    }
    return 0;
}

/** NC core/Command/Config/ListConfigs.php (default output json_pretty; sensitive
 * values masked unless --private: SystemConfig::getFilteredValue). */
function cmd_config_list(Config $config, array $args, array $options): int {
    $app = $args[0] ?? 'all';
    $format = array_key_exists('output', $options) ? $options['output'] : 'json_pretty';
    if ($app !== 'system' && $app !== 'all') {
        write_out([], $format);
        return 0;
    }
    $system = [];
    foreach (array_keys($config->cache) as $key) {
        $value = $config->getValue($key);
        $system[$key] = (empty($options['private']) && in_array($key, SENSITIVE, true)) ? MASK : $value;
    }
    write_out($app === 'all' ? ['system' => $system, 'apps' => []] : ['system' => $system], $format);
    return 0;
}

/** NC core/Command/Config/System/GetConfig.php: exit 1 and no output for a missing key. */
function cmd_system_get(Config $config, array $args, array $options): int {
    $value = $config->getValue($args[0][0] ?? '');
    if ($value === null) {
        if (isset($options['default-value'])) {
            echo $options['default-value'] . PHP_EOL;
            return 0;
        }
        return 1;
    }
    $format = $options['output'] ?? 'plain';
    echo ($format === 'plain' && !is_array($value)) ? value_to_string($value) . PHP_EOL : json_encode($value) . PHP_EOL;
    return 0;
}

/** NC core/Command/Config/System/SetConfig.php execute() + castValue(). */
function cmd_system_set(Config $config, array $args, array $options): int {
    $name = $args[0][0] ?? '';
    $raw = (string)($options['value'] ?? '');
    $type = $options['type'] ?? 'string';
    $value = match ($type) {
        'boolean' => match (strtolower($raw)) {
            'true' => true,
            'false' => false,
            default => throw new OccFailure('Unable to parse value as boolean', 'SetConfig.php line 126'),
        },
        'integer', 'int' => is_numeric($raw) ? (int)$raw
            : throw new OccFailure('Non-numeric value specified', 'SetConfig.php line 106'),
        default => $raw,
    };
    if (!empty($options['update-only']) && !array_key_exists($name, $config->cache)) {
        echo 'Value not updated, as it has not been set before.' . PHP_EOL;
        return 1;
    }
    $config->setValue($name, $value);
    $readable = is_bool($value) ? ($value ? 'true' : 'false') : $value;
    echo "System config value $name set to " . ($type === 'int' ? 'integer' : $type) . " $readable" . PHP_EOL;
    return 0;
}

/** NC core/Command/Config/System/DeleteConfig.php execute(). */
function cmd_system_delete(Config $config, array $args, array $options): int {
    $name = $args[0][0] ?? '';
    if (!empty($options['error-if-not-exists']) && !array_key_exists($name, $config->cache)) {
        echo "System config $name could not be deleted because it did not exist" . PHP_EOL;
        return 1;
    }
    $config->deleteKey($name);
    echo "System config value $name deleted" . PHP_EOL;
    return 0;
}

/** NC apps/files/lib/Command/Scan.php execute(): everything on stdout, an unknown
 * user is a line, not an exit code; then presentStats()' table. */
function cmd_files_scan(Config $config, string $root, array $args, array $options): int {
    $data = rtrim((string)$config->getValue('datadirectory', $root . '/data'), '/');
    $known = array_values(array_filter(scandir($data) ?: [], fn($u) => $u[0] !== '.' && is_dir("$data/$u/files")));
    $users = !empty($options['all']) ? $known : ($args[0] ?? []);
    if (count($users) === 0) {
        echo 'Please specify the user id to scan, --all to scan for all users or --path=...' . PHP_EOL;
        return 1;
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
    echo "+---------+-------+-----+---------+---------+--------+--------------+" . PHP_EOL
        . "| Folders | Files | New | Updated | Removed | Errors | Elapsed time |" . PHP_EOL
        . "+---------+-------+-----+---------+---------+--------+--------------+" . PHP_EOL
        . "| 0       | 0     | 0   | 0       | 0       | 0      | 00:00:00     |" . PHP_EOL
        . "+---------+-------+-----+---------+---------+--------+--------------+" . PHP_EOL;
    return 0;
}

/* --- lib/private/Console/Application.php: loadCommands() ---------------------------- */

/** Whether loadCommands() silenced its notices (see the header on --no-warnings). */
function warnings_silenced(string $line, array $tokens): bool {
    if ($line === 'pr56754') {
        // PR 56754: $input->hasParameterOption('--no-warnings', true) - anywhere before '--'
        foreach ($tokens as $token) {
            if ($token === '--') {
                return false;
            }
            if ($token === '--no-warnings' || str_starts_with($token, '--no-warnings=')) {
                return true;
            }
        }
        return false;
    }
    // 30-32: $input->bind($inputDefinition) in try/catch, then getOption('no-warnings')
    // (the options parsed before the RuntimeException count)
    try {
        [$seen] = parse_input($tokens, global_options($line), [['command', true, false]], false, null);
    } catch (OccFailure $failure) {
        $seen = $failure->partial;
    }
    return !empty($seen['no-warnings']);
}

/** NC Application::loadCommands(): the memory-limit warning and the state notices, on
 * stderr (getErrorOutput()), unless --no-warnings set the output quiet. */
function write_notices(string $line, ?string $command, bool $installed, bool $maintenance, bool $needUpgrade): void {
    $lines = [];
    $limit = ini_get('memory_limit');
    $bytes = (int)$limit * match (strtolower(substr((string)$limit, -1))) { 'g' => 1 << 30, 'm' => 1 << 20, 'k' => 1 << 10, default => 1 };
    if ($limit !== '-1' && $bytes < 512 * 1024 * 1024) {     // OC\MemoryInfo::isMemoryLimitSufficient()
        $lines = $line === 'pr56754'
            ? ['The PHP-CLI memory limit (' . trim((string)$limit) . ') is below the recommended 512M. Some functions may fail.',
               'Please adjust your "memory_limit" setting in the relevant php.ini file to at least 512M to prevent potential errors.']
            : ['The current PHP memory limit is below the recommended value of 512MB.'];
    }
    if ($line === 'pr56754') {
        // PR 56754 writeNeedsUpdateInfo / writeNotInstalledInfo / writeMaintenanceModeInfo
        if ($needUpgrade && $command !== '_completion' && $command !== 'upgrade') {
            $lines[] = 'Nextcloud or one of its apps requires an upgrade. Only a limited number of commands are available.';
            $lines[] = 'Please use your browser or the "occ upgrade" command to finish the upgrade.';
        } elseif (!$installed && $command !== '_completion' && $command !== 'maintenance:install') {
            $lines[] = 'Nextcloud is not installed. Only a limited number of commands are available.';
            $lines[] = 'Please use your browser or the "occ maintenance:install" command to proceed with installation.';
        } elseif ($installed && $maintenance && !in_array($command, ['_completion', 'maintenance:mode', 'status'], true)) {
            $lines[] = 'Nextcloud is in maintenance mode. Only a limited number of commands are available.';
            $lines[] = 'In maintenance mode logins are blocked and events may not be triggered since apps are not loaded.';
            $lines[] = 'Proceed with maintenance activities then use the "occ maintenance:mode --off" to disable maintenance mode.';
        }
    } elseif ($installed && $needUpgrade) {
        if ($command !== '_completion') {                // NeedsUpdateException caught in loadCommands
            $lines[] = 'Nextcloud or one of the apps require upgrade - only a limited number of commands are available';
            $lines[] = 'You may use your browser or the occ upgrade command to do the upgrade';
        }
    } elseif ($installed && $maintenance) {
        if (!in_array($command, ['_completion', 'maintenance:mode', 'status'], true)) {   // writeMaintenanceModeInfo
            $lines[] = 'Nextcloud is in maintenance mode, no apps are loaded.';
            $lines[] = 'Commands provided by apps are unavailable.';
        }
    } elseif (!$installed && $command !== '_completion' && $command !== 'maintenance:install') {
        $lines[] = 'Nextcloud is not installed - only a limited number of commands are available';
    }
    foreach ($lines as $text) {
        fwrite(STDERR, $text . PHP_EOL);
    }
}

/* --- main: console.php, then Application::loadCommands() and SF Application::run() --- */

function first_argument(array $tokens): ?string {
    // SF ArgvInput::getFirstArgument(), for the options dbpipe and admins use
    foreach ($tokens as $token) {
        if ($token === '--' || $token === '' || $token[0] !== '-') {
            return $token === '--' ? null : $token;
        }
    }
    return null;
}

function run_command(string $command, array $definitions, Config $config, string $root, array $code, string $line,
                     bool $needUpgrade, array $tokens): int {
    if (!isset($definitions[$command])) {
        fwrite(STDERR, "occ double: '$command' is registered in real occ but not reproduced here" . PHP_EOL);
        exit(70);
    }
    $definition = $definitions[$command];
    $options = global_options($line) + $definition['options'];
    $arguments = array_merge([['command', true, false]], $definition['arguments']);
    $rest = $tokens;
    // the command's own name is the first argument of the merged definition (Command::run binds it)
    [$values, $args] = parse_input($rest, $options, $arguments, true, $command);
    array_shift($args);
    validate_input(array_merge([$command], $args), $arguments);
    return match ($command) {
        'status' => cmd_status($config, $code, $needUpgrade, $values),
        'maintenance:mode' => cmd_maintenance_mode($config, $values),
        'maintenance:data-fingerprint' => cmd_data_fingerprint($config, $line),
        'config:list' => cmd_config_list($config, $args, $values),
        'config:system:get' => cmd_system_get($config, $args, $values),
        'config:system:set' => cmd_system_set($config, $args, $values),
        'config:system:delete' => cmd_system_delete($config, $args, $values),
        'files:scan' => cmd_files_scan($config, $root, $args, $values),
    };
}

php_warning($ROOT);
$tokens = array_slice($argv, 1);
$command = null;
$definitions = definitions();
try {
    // console.php: lib/base.php (reading the config) first, then the owner check
    $config = new Config($CONFIG_DIR);
    check_owner($CONFIG_FILE);
    pcntl_warning($argv);
    [$line, $code] = code_line($ROOT, $config);
    $installed = filter_var($config->getValue('installed', false), FILTER_VALIDATE_BOOLEAN);
    $maintenance = $installed && maintenance_on($config);
    $needUpgrade = needs_upgrade($code[0], $config);
    log_call($ROOT, maintenance_on($config), $argv);
    $first = first_argument($tokens);
    if (!warnings_silenced($line, $tokens)) {
        write_notices($line, $first, $installed, $maintenance, $needUpgrade);
    }
    simulated_failure($ROOT, (string)$first, array_map(fn($t) => explode('=', $t, 2)[0],
        array_values(array_filter($tokens, fn($t) => $t !== $first))));
    // SF Application::doRun(): no command name means `list` (not reproduced)
    $command = find_command($first ?? 'list', registered($line, $installed, $maintenance, $needUpgrade));
    exit(run_command($command, $definitions, $config, $ROOT, $code, $line, $needUpgrade, $tokens));
} catch (UnhandledFailure $failure) {
    // NC console.php exceptionHandler(): on stdout, the exception as PHP prints it, exit 1
    echo "An unhandled exception has been thrown:" . PHP_EOL;
    echo 'Exception: ' . $failure->getMessage() . ' in ' . $ROOT . '/lib/private/Config.php:222' . PHP_EOL
        . 'Stack trace:' . PHP_EOL . '#0 {main}';
    exit(1);
} catch (OccFailure $failure) {
    // SF Application::run(): render, exit with the code or 1; the synopsis only once a command runs
    $known = $command !== null && $failure->inCommand && isset($definitions[$command]);
    render_failure($failure, $known ? synopsis($command, $definitions[$command]) : null);
    exit(1);
}
