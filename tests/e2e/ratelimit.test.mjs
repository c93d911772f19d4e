// Per-key rate limits from the key's tier, with RateLimit-* headers and 429 + Retry-After.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRtad, makeKey } from './lib/rtad.mjs';
import { assertError } from './lib/check.mjs';

describe('rate limits', () => {
    let rtad;
    before(async () => {
        rtad = await startRtad({ env: {
            RTA_TIERS_FREE_API_REQUESTS_PER_MINUTE: '5',
            RTA_TIERS_PRO_API_REQUESTS_PER_MINUTE: '8',
        } });
    });
    after(async () => { await rtad?.stop(); });

    function rl(r) {
        return {
            limit: r.headers.get('ratelimit-limit'),
            remaining: r.headers.get('ratelimit-remaining'),
            reset: r.headers.get('ratelimit-reset'),
        };
    }

    it('free tier: 5 requests pass with counting headers, the 6th is 429 with Retry-After',
        async () => {
            const k = await makeKey(rtad, { user: 'limited', tier: 'free', role: 'reader' });
            const remaining = [];
            for (let i = 0; i < 5; i++) {
                const r = await rtad.api('GET', '/v1/protocols', { key: k.key });
                assert.equal(r.status, 200, `request ${i + 1}: ${r.status} ${r.text}`);
                const h = rl(r);
                assert.equal(h.limit, '5', `RateLimit-Limit on request ${i + 1}`);
                assert.match(h.remaining ?? '', /^\d+$/, 'RateLimit-Remaining');
                assert.match(h.reset ?? '', /^\d+$/, 'RateLimit-Reset');
                remaining.push(Number(h.remaining));
            }
            assert.deepEqual(remaining, [4, 3, 2, 1, 0]);
            const r = await rtad.api('GET', '/v1/protocols', { key: k.key });
            assertError(r, 429, 'rate_limited');
            const ra = r.headers.get('retry-after');
            assert.match(ra ?? '', /^\d+$/, `Retry-After: ${ra}`);
            assert.ok(Number(ra) >= 1 && Number(ra) <= 60, `Retry-After ${ra}`);
            assert.equal(rl(r).limit, '5');
            assert.equal(rl(r).remaining, '0');
            assert.ok(Number(rl(r).reset) >= 1 && Number(rl(r).reset) <= 60);
        });

    it('limits are per key: another key of the same user is unaffected', async () => {
        const a = await makeKey(rtad, { user: 'shared', tier: 'free', role: 'reader' });
        const b = await makeKey(rtad, { user: 'shared', tier: 'free', role: 'reader' });
        for (let i = 0; i < 6; i++) await rtad.api('GET', '/v1/chains', { key: a.key });
        assertError(await rtad.api('GET', '/v1/chains', { key: a.key }), 429, 'rate_limited');
        const r = await rtad.api('GET', '/v1/chains', { key: b.key });
        assert.equal(r.status, 200, r.text);
        assert.equal(rl(r).remaining, '4');
    });

    it('the tier sets the limit (pro = 8 here)', async () => {
        const k = await makeKey(rtad, { user: 'pro-user', tier: 'pro', role: 'reader' });
        let ok = 0;
        let limited = 0;
        for (let i = 0; i < 10; i++) {
            const r = await rtad.api('GET', '/v1/protocols', { key: k.key });
            assert.equal(rl(r).limit, '8');
            if (r.status === 200) ok++;
            else if (r.status === 429) limited++;
        }
        assert.equal(ok, 8);
        assert.equal(limited, 2);
    });

    it('unauthenticated probes are not rate limited', async () => {
        for (let i = 0; i < 20; i++) {
            assert.equal((await rtad.api('GET', '/healthz')).status, 200);
        }
    });

    it('every authenticated answer carries the headers, errors included', async () => {
        const k = await makeKey(rtad, { user: 'hdrs', tier: 'pro', role: 'reader' });
        const notFound = await rtad.api('GET', '/v1/protocols/no-such-protocol', { key: k.key });
        assert.equal(notFound.status, 404, notFound.text);
        assert.equal(rl(notFound).limit, '8');
        assert.match(rl(notFound).remaining ?? '', /^\d+$/);
        const forbidden = await rtad.api('POST', '/v1/ingest', { key: k.key,
            body: { tvl: [{ protocol: 'x', chain: 'y', tvl: 1 }] } });
        assert.equal(forbidden.status, 403, forbidden.text);
        assert.equal(rl(forbidden).limit, '8');
        const admin = await rtad.api('GET', '/v1/admin/keys', { key: rtad.adminKey });
        assert.match(admin.headers.get('ratelimit-limit') ?? '', /^\d+$/);
    });
});
