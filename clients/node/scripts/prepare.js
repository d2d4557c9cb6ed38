'use strict';
/*
 * `prepare`: builds the package. npm runs it after `npm ci` / `npm install` here, before `npm
 * pack`, and when another project installs this folder (`npm install /path/to/clients/node`).
 * In that last case npm links the folder without installing its devDependencies, so TypeScript
 * is missing: install this package's own locked dependencies here first, as npm does for a git
 * dependency. The npm settings of the outer install (its prefix, its --global, ...) are not
 * passed on: they belong to the other project.
 */
const { execFileSync } = require('node:child_process');
const path = require('node:path');

const root = path.resolve(__dirname, '..');

function resolvable(name) {
  try {
    require.resolve(`${name}/package.json`, { paths: [root] });
    return true;
  } catch {
    return false;
  }
}

if (!resolvable('typescript')) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)
      || /^npm_config_(cache|registry|userconfig)$/i.test(k)));
  console.error('@sluice/client: installing its build dependencies in ' + root);
  execFileSync(process.platform === 'win32' ? 'npm.cmd' : 'npm',
      ['ci', '--include=dev', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund'],
      { cwd: root, env, stdio: 'inherit', shell: process.platform === 'win32' });
}
execFileSync(process.execPath, [require.resolve('typescript/bin/tsc', { paths: [root] }), '-p', 'tsconfig.json'],
    { cwd: root, stdio: 'inherit' });
require('./package.js');
