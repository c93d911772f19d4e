// Running out of file descriptors: rtad holds as many connections as its open-file limit leaves
// room for, refuses the rest at once, and says so in its log and on /metrics, while the
// descriptors it keeps in reserve let it go on working.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { mkdtempSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startRtad } from './lib/rtad.mjs';

const LIMIT = 300; // open files for rtad
// rtad keeps 100 descriptors for itself and 4 for each writer thread's loop
const FIT = LIMIT - 100 - 4;
const CLIENTS = 240;

function openSocket(port) {
    return new Promise((res) => {
        const s = connect({ host: '127.0.0.1', port });
        s.state = { closedByServer: false };
        s.on('connect', () => res(s));
        s.on('error', () => { s.state.closedByServer = true; res(s); });
        s.on('close', () => { s.state.closedByServer = true; });
    });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function metric(text, name, labels) {
    const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
    return line ? Number(line.split(' ').pop()) : NaN;
}

describe('open-file limit', () => {
    let rtad;
    before(async () => {
        // rtad under a lower limit: a wrapper sets it (soft and hard) and execs the real binary
        const dir = mkdtempSync(join(tmpdir(), 'rtad-fds-'));
        const wrapper = join(dir, 'rtad-limited.sh');
        writeFileSync(wrapper, `#!/bin/sh\nulimit -n ${LIMIT} || exit 97\nexec "$RTAD_REAL" "$@"\n`);
        chmodSync(wrapper, 0o755);
        const real = resolve(process.env.RTAD_BIN || process.env.RTA_BIN || 'build/rtad');
        rtad = await startRtad({ binary: wrapper, env: { RTAD_REAL: real },
            args: ['--set', 'server.write_threads=1'] });
    });
    after(async () => { await rtad?.stop(); });

    it('says at startup that max_connections is above what the limit allows', () => {
        const rec = rtad.logs.find((l) => /above what the open-file limit allows/.test(l.msg || ''));
        assert.ok(rec, 'no startup warning about the open-file limit');
        assert.equal(rec.open_file_limit, LIMIT);
        assert.equal(rec.connections_possible, FIT);
    });

    it('holds what fits, refuses the rest at once with a log line and a metric, and recovers', async () => {
        const sockets = [];
        for (let i = 0; i < CLIENTS; i++) sockets.push(await openSocket(rtad.port));
        await sleep(500);
        const refused = sockets.filter((s) => s.state.closedByServer).length;
        const held = CLIENTS - refused;
        assert.equal(held, FIT, `held ${held} of ${CLIENTS}`);
        const line = await rtad.waitForLog((l) => l.msg === 'refusing connections: out of file descriptors');
        assert.equal(line.open_file_limit, LIMIT);
        assert.equal(line.open, FIT);
        for (const s of sockets) s.destroy();
        await sleep(300);
        // descriptors are back: the API answers, and counts every refusal
        const r = await rtad.api('GET', '/metrics');
        assert.equal(r.status, 200);
        assert.equal(metric(r.text, 'rta_connections_total', 'result="refused_no_fds"'), refused);
        assert.equal(metric(r.text, 'rta_connections_total', 'result="refused_limit"'), 0);
    });
});
