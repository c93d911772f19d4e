// Alert rules as a user of the REST API sees them: the spec's example rule (spec 2.3.2) created
// with the spec's body plus a webhook action, and what arrives when it fires (email through a
// real SMTP server, a signed webhook); validation errors with their paths and rules; the tier
// quota; GET / list / PUT / PATCH / DELETE; ownership (another user's rule is a 404); the
// webhook secret shown once; audit entries.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRtad, makeKey, api } from './lib/rtad.mjs';
import { assertError, assertValidation } from './lib/check.mjs';
import { metric } from './lib/rt.mjs';
import {
    alertEnv, startWebhookReceiver, startSmtpReceiver, createRule, tvl, listDeliveries,
    waitRuleDeliveries, history, assertSignedWebhook, mailHeader, checkDeliveryShape, settle,
    UUIDV7, ISO_MS,
    stopClean,
} from './lib/alerts.mjs';

const SPEC_BODY = {
    name: 'Uniswap TVL Alert',
    conditions: [
        {
            protocol: 'uniswap-v3',
            metric: 'tvl',
            operator: 'change_pct',
            threshold: 0.1,
            timeWindow: 3600,
        },
    ],
    actions: [
        {
            type: 'email',
            target: 'user@example.com',
            template: 'tvl_change',
        },
    ],
};

describe('alert rules API', () => {
    let rtad;
    let hooks;
    let smtp;
    let alice; // free tier, quota 2
    let bob;
    let reader;
    before(async () => {
        hooks = await startWebhookReceiver();
        smtp = await startSmtpReceiver();
        rtad = await startRtad({ env: alertEnv({
            RTA_SMTP_URL: smtp.url,
            RTA_SMTP_FROM: 'RTA Alerts <alerts@rta.example>',
            RTA_ALERTS_PUBLIC_URL: 'https://rta.example',
            RTA_TIERS_FREE_ALERT_RULES: '2',
        }) });
        alice = (await makeKey(rtad, { user: 'alice', tier: 'free' })).key;
        bob = (await makeKey(rtad, { user: 'bob', tier: 'pro' })).key;
        reader = (await makeKey(rtad, { user: 'carol', tier: 'pro', role: 'reader' })).key;
    });
    after(async () => {
        try {
            await stopClean(rtad);
        } finally {
            await hooks?.close();
            await smtp?.close();
        }
    });

    it('the spec example rule (plus a webhook) is created, fires on a 15% drop of the ' +
        'protocol total, and the email and the signed webhook arrive', async () => {
        const body = structuredClone(SPEC_BODY);
        body.actions.push({ type: 'webhook', target: hooks.url('/spec') });
        const r = await api(rtad, 'POST', '/v1/alerts/rules', { key: bob, body });
        assert.equal(r.status, 201, r.text);
        const rule = r.json;
        assert.match(rule.ruleId, UUIDV7, r.text);
        assert.equal(rule.userId, 'bob');
        assert.equal(rule.name, 'Uniswap TVL Alert');
        assert.equal(rule.isActive, true);
        assert.equal(rule.throttleMinutes, 5, 'default throttle');
        assert.equal(rule.notifyResolved, false);
        assert.deepEqual(rule.conditions, SPEC_BODY.conditions);
        assert.deepEqual(rule.actions[0], SPEC_BODY.actions[0]);
        assert.equal(rule.actions[1].type, 'webhook');
        assert.equal(rule.actions[1].target, hooks.url('/spec'));
        const secret = rule.actions[1].secret;
        assert.match(secret, /^whsec_[A-Za-z0-9+/]{16,}={0,2}$/, r.text);
        assert.ok(Buffer.from(secret.slice(6), 'base64').length >= 24, 'secret >= 192 bits');
        assert.match(rule.createdAt, ISO_MS);
        assert.equal(rule.lastTriggered, null);
        hooks.setSecret('/spec', secret);

        // the secret is shown once: not in GET, not in the list
        const g = await api(rtad, 'GET', `/v1/alerts/rules/${rule.ruleId}`, { key: bob });
        assert.equal(g.status, 200, g.text);
        assert.ok(!g.text.includes(secret), `GET shows the secret: ${g.text}`);
        assert.equal(g.json.actions[1].secret, undefined, g.text);
        assert.deepEqual(g.json.conditions, SPEC_BODY.conditions);
        const l = await api(rtad, 'GET', '/v1/alerts/rules', { key: bob });
        assert.equal(l.status, 200, l.text);
        assert.ok(!l.text.includes(secret), `the list shows the secret: ${l.text}`);
        assert.ok(l.json.data.some((x) => x.ruleId === rule.ruleId), l.text);

        // uniswap-v3's total drops 1000 -> 850 (-15%, threshold 10% over an hour)
        await tvl(rtad, 'uniswap-v3', 'ethereum', 1000);
        const ev = await tvl(rtad, 'uniswap-v3', 'ethereum', 850);
        assert.equal(ev.events, 1, JSON.stringify(ev));

        const [hook] = await hooks.waitRequests('/spec', 1);
        assertSignedWebhook(hook, secret);
        const p = hook.json;
        assert.equal(p.type, 'alert.firing', hook.body);
        assert.match(p.timestamp, ISO_MS, hook.body);
        assert.deepEqual(p.data.rule, { id: rule.ruleId, name: 'Uniswap TVL Alert' });
        assert.equal(p.data.series, 'tvl:uniswap-v3', hook.body);
        assert.equal(p.data.state, 'firing');
        assert.ok(Math.abs(p.data.value - -0.15) < 1e-9, `value: ${hook.body}`);
        assert.equal(p.data.deliveryId, hook.id, 'deliveryId = webhook-id');
        assert.match(p.data.triggerId, UUIDV7);
        assert.equal(p.data.event.eventType, 'tvl_change', hook.body);
        assert.equal(p.data.event.protocol, 'uniswap-v3');
        assert.equal(p.data.event.offset, ev.firstOffset, hook.body);
        assert.equal(p.data.event.data.currentValue, 850);
        assert.equal(p.data.event.data.previousValue, 1000);

        const [mail] = await smtp.waitMessages('user@example.com', 1);
        assert.equal(mail.accepted, true);
        const m = mail.mail;
        assert.equal(m.from.value[0].address, 'alerts@rta.example', mail.raw);
        assert.equal(m.from.value[0].name, 'RTA Alerts', mail.raw);
        assert.equal(m.to.value[0].address, 'user@example.com', mail.raw);
        assert.equal(m.subject, '[rta] Uniswap TVL Alert: uniswap-v3 TVL alert firing', mail.raw);
        assert.ok(m.date instanceof Date && Math.abs(m.date - Date.now()) < 120000, mail.raw);
        assert.equal(mailHeader(m, 'auto-submitted'), 'auto-generated', mail.raw);
        assert.equal(mailHeader(m, 'list-unsubscribe'),
            '<https://rta.example/v1/users/me/preferences>', mail.raw);
        assert.equal(mailHeader(m, 'message-id'), m.messageId);
        assert.match(m.text, /^Your alert rule "Uniswap TVL Alert" is firing\./, m.text);
        assert.match(m.text, /^Protocol: uniswap-v3$/m, m.text);
        assert.match(m.text, /^Metric: tvl$/m, m.text);
        assert.match(m.text, /change -15\.00%/, m.text);
        assert.match(m.text, /^Threshold: 0\.1$/m, m.text);
        assert.match(m.text, new RegExp(`^Event: ${p.data.event.eventId}$`, 'm'), m.text);

        // tracking: both deliveries delivered, one trigger in the history
        const dels = await waitRuleDeliveries(rtad, bob, rule.ruleId, 2,
            { pred: (d) => d.status === 'delivered' });
        for (const d of dels) checkDeliveryShape(d);
        const email = dels.find((d) => d.channel === 'email');
        assert.equal(m.messageId, `<${email.id}@rta>`, 'Message-ID is <deliveryId@rta>');
        assert.equal(email.target, 'user@example.com');
        assert.equal(email.attempts, 1);
        assert.equal(email.lastStatusCode, 250);
        const web = dels.find((d) => d.channel === 'webhook');
        assert.equal(web.id, hook.id);
        assert.equal(web.lastStatusCode, 200);
        assert.match(web.deliveredAt, ISO_MS);

        const hist = await history(rtad, bob, rule.ruleId);
        assert.equal(hist.data.length, 1, JSON.stringify(hist));
        const t = hist.data[0];
        assert.equal(t.triggerId, p.data.triggerId);
        assert.equal(t.state, 'firing');
        assert.equal(t.series, 'tvl:uniswap-v3');
        assert.equal(t.eventId, p.data.event.eventId);
        assert.equal(t.event.eventId, p.data.event.eventId);
        assert.equal(t.deliveries.length, 2);
        for (const d of t.deliveries) {
            assert.equal(d.attemptLog.length, 1, JSON.stringify(d));
            assert.equal(d.attemptLog[0].outcome, 'success');
        }
        const got = await api(rtad, 'GET', `/v1/alerts/rules/${rule.ruleId}`, { key: bob });
        assert.match(got.json.lastTriggered ?? '', ISO_MS, got.text);

        assert.ok(await metric(rtad, 'rta_alert_triggers_total', { state: 'firing' }) >= 1);
        assert.ok(await metric(rtad, 'rta_alert_notifications_total',
            { channel: 'email', status: 'delivered' }) >= 1);
        assert.ok(await metric(rtad, 'rta_alert_delivery_seconds_count',
            { channel: 'webhook' }) >= 1);
    });

    it('validation errors name the path and the rule, all at once', async () => {
        const cases = [
            [{}, [['$.name', 'required'], ['$.conditions', 'required'],
                ['$.actions', 'required']]],
            [{ ...SPEC_BODY, conditions: [{ ...SPEC_BODY.conditions[0], operator: 'above' }] },
                [['$.conditions[0].operator', 'enum']]],
            [{ ...SPEC_BODY, actions: [SPEC_BODY.actions[0],
                { type: 'webhook', target: 'ftp://example.com/x' }] },
            [['$.actions[1].target', 'url']]],
            [{ ...SPEC_BODY, actions: [{ type: 'email', target: 'a@example.com',
                template: 'fancy' }] }, [['$.actions[0].template', 'template']]],
            [{ ...SPEC_BODY, actions: [{ type: 'email', target: 'not-an-address' },
                { type: 'push', target: 'has space' }, { type: 'sms', target: 'x' }] },
            [['$.actions[0].target', 'email'], ['$.actions[1].target', 'device_token'],
                ['$.actions[2].type', 'enum']]],
            [{ ...SPEC_BODY, conditions: [{ metric: 'volume', operator: 'gt', threshold: 1 }] },
                [['$.conditions[0].metric', 'enum']]],
            [{ ...SPEC_BODY, conditions: [{ metric: 'tvl', operator: 'gt', threshold: 'big' }] },
                [['$.conditions[0].threshold', 'type']]],
            [{ ...SPEC_BODY, conditions: [{ metric: 'tvl', operator: 'change_pct',
                threshold: 0 }] }, [['$.conditions[0].threshold', 'range']]],
            [{ ...SPEC_BODY, conditions: [{ metric: 'tvl', operator: 'change_pct',
                threshold: 0.1, timeWindow: 10 }] }, [['$.conditions[0].timeWindow', 'range']]],
            [{ ...SPEC_BODY, conditions: [{ metric: 'tvl', operator: 'gt', threshold: 1,
                timeWindow: 3600, tolerance: 0.1 }] },
            [['$.conditions[0].timeWindow', 'not_applicable'],
                ['$.conditions[0].tolerance', 'not_applicable']]],
            [{ ...SPEC_BODY, conditions: [{ metric: 'change_24h', operator: 'change_pct',
                threshold: 0.1 }] }, [['$.conditions[0].operator', 'operator']]],
            [{ ...SPEC_BODY, conditions: [{ metric: 'tvl', token: 'coingecko:ethereum',
                operator: 'gt', threshold: 1 }, { metric: 'price', protocol: 'aave',
                operator: 'gt', threshold: 1 }] },
            [['$.conditions[0].token', 'scope'], ['$.conditions[1].protocol', 'scope']]],
            [{ ...SPEC_BODY, conditions: [{ metric: 'tvl', protocol: 'Not A Slug',
                operator: 'gt', threshold: 1 }, { metric: 'price', token: 'nocolon',
                operator: 'gt', threshold: 1 }] },
            [['$.conditions[0].protocol', 'slug'], ['$.conditions[1].token', 'token']]],
            [{ ...SPEC_BODY, conditions: [{ metric: 'tvl', protocol: 'aave', operator: 'gt',
                threshold: 1 }, { metric: 'price', operator: 'gt', threshold: 1 }] },
            [['$.conditions[1]', 'scope']]],
            [{ ...SPEC_BODY, conditions: [] }, [['$.conditions', 'count']]],
            [{ ...SPEC_BODY, actions: Array.from({ length: 11 },
                (_, i) => ({ type: 'email', target: `u${i}@example.com` })) },
            [['$.actions', 'count']]],
            [{ ...SPEC_BODY, name: '', throttleMinutes: -1, isActive: 'yes', colour: 'red' },
                [['$.name', 'length'], ['$.throttleMinutes', 'range'], ['$.isActive', 'type'],
                    ['$.colour', 'unknown_field']]],
            [{ ...SPEC_BODY, conditions: [{ metric: 'tvl', operator: 'gt', threshold: 1,
                extra: true }] }, [['$.conditions[0].extra', 'unknown_field']]],
        ];
        const nBefore = (await api(rtad, 'GET', '/v1/alerts/rules', { key: bob })).json.meta.total;
        for (const [body, expected] of cases) {
            const r = await api(rtad, 'POST', '/v1/alerts/rules', { key: bob, body });
            for (const [path, rule] of expected) assertValidation(r, path, rule);
        }
        const r = await api(rtad, 'POST', '/v1/alerts/rules',
            { key: bob, body: '{"name": "x", ' });
        assertError(r, 400, 'invalid_json');
        const nAfter = (await api(rtad, 'GET', '/v1/alerts/rules', { key: bob })).json.meta.total;
        assert.equal(nAfter, nBefore, 'no invalid rule was stored');
    });

    it('the tier quota: a third rule on a free key (alert_rules=2) is 403 ' +
        'alert_rule_quota_exceeded; deleting one makes room', async () => {
        const body = (n) => ({ name: `quota ${n}`, conditions: [{ metric: 'tvl',
            protocol: 'quota-p', operator: 'gt', threshold: 1 }],
        actions: [{ type: 'email', target: 'alice@example.com' }] });
        const a = await createRule(rtad, alice, body(1));
        await createRule(rtad, alice, body(2));
        const r = await api(rtad, 'POST', '/v1/alerts/rules', { key: alice, body: body(3) });
        const err = assertError(r, 403, 'alert_rule_quota_exceeded');
        assert.deepEqual(err.details, { tier: 'free', limit: 2, current: 2 }, r.text);
        // another user's quota is their own
        await createRule(rtad, bob, body(4));
        const d = await api(rtad, 'DELETE', `/v1/alerts/rules/${a.ruleId}`, { key: alice });
        assert.equal(d.status, 204, d.text);
        await createRule(rtad, alice, body(5));
        assertError(await api(rtad, 'POST', '/v1/alerts/rules', { key: alice, body: body(6) }),
            403, 'alert_rule_quota_exceeded');
    });

    it('GET, list with ?active, PUT (full body), PATCH (subset), DELETE; inactive rules ' +
        'do not fire; audit entries', async () => {
        const rule = await createRule(rtad, bob, {
            name: 'crud', description: 'first', throttleMinutes: 0,
            conditions: [{ metric: 'tvl', protocol: 'crud-p', chain: 'ethereum',
                operator: 'gt', threshold: 100 }],
            actions: [{ type: 'webhook', target: hooks.url('/crud') }],
        });
        const secret = rule.actions[0].secret;
        hooks.setSecret('/crud', secret);
        const id = rule.ruleId;

        // PUT: a full body; id, owner and creation time stay; the unchanged webhook keeps
        // its secret (deliveries still verify with it)
        const put = await api(rtad, 'PUT', `/v1/alerts/rules/${id}`, { key: bob, body: {
            name: 'crud v2', throttleMinutes: 0, notifyResolved: true,
            conditions: [{ metric: 'tvl', protocol: 'crud-p', chain: 'ethereum',
                operator: 'gt', threshold: 200 }],
            actions: [{ type: 'webhook', target: hooks.url('/crud') }],
        } });
        assert.equal(put.status, 200, put.text);
        assert.equal(put.json.ruleId, id);
        assert.equal(put.json.name, 'crud v2');
        assert.equal(put.json.description, undefined, 'PUT replaces: description gone');
        assert.equal(put.json.notifyResolved, true);
        assert.equal(put.json.conditions[0].threshold, 200);
        assert.equal(put.json.createdAt, rule.createdAt);
        assert.ok(put.json.updatedAt >= rule.updatedAt, put.text);
        assert.ok(!put.text.includes('whsec_'), `PUT answer shows a secret: ${put.text}`);

        // PATCH: a subset; the rest stays
        const patch = await api(rtad, 'PATCH', `/v1/alerts/rules/${id}`,
            { key: bob, body: { isActive: false, description: 'paused' } });
        assert.equal(patch.status, 200, patch.text);
        assert.equal(patch.json.isActive, false);
        assert.equal(patch.json.description, 'paused');
        assert.equal(patch.json.name, 'crud v2');
        assert.equal(patch.json.conditions[0].threshold, 200);
        assertValidation(await api(rtad, 'PATCH', `/v1/alerts/rules/${id}`,
            { key: bob, body: { throttleMinutes: 'often' } }), '$.throttleMinutes', 'type');

        const inactive = await api(rtad, 'GET', '/v1/alerts/rules?active=false', { key: bob });
        assert.ok(inactive.json.data.some((x) => x.ruleId === id), inactive.text);
        assert.ok(inactive.json.data.every((x) => x.isActive === false), inactive.text);
        const active = await api(rtad, 'GET', '/v1/alerts/rules?active=true', { key: bob });
        assert.ok(!active.json.data.some((x) => x.ruleId === id), active.text);

        // inactive: a matching value does not fire
        await tvl(rtad, 'crud-p', 'ethereum', 50);
        await tvl(rtad, 'crud-p', 'ethereum', 300);
        await settle(800);
        assert.equal(hooks.requests('/crud').length, 0, 'an inactive rule fired');
        assert.equal((await history(rtad, bob, id)).data.length, 0);

        // active again: the next matching value fires, signed with the original secret
        const on = await api(rtad, 'PATCH', `/v1/alerts/rules/${id}`,
            { key: bob, body: { isActive: true } });
        assert.equal(on.status, 200, on.text);
        await tvl(rtad, 'crud-p', 'ethereum', 310);
        const [req] = await hooks.waitRequests('/crud', 1);
        assertSignedWebhook(req, secret);

        const del = await api(rtad, 'DELETE', `/v1/alerts/rules/${id}`, { key: bob });
        assert.equal(del.status, 204, del.text);
        assert.equal(del.text, '');
        assertError(await api(rtad, 'GET', `/v1/alerts/rules/${id}`, { key: bob }), 404,
            'rule_not_found');
        assertError(await api(rtad, 'DELETE', `/v1/alerts/rules/${id}`, { key: bob }), 404,
            'rule_not_found');

        const audit = await api(rtad, 'GET', `/v1/admin/audit?action=alert_rule.*&target=${id}`,
            { key: rtad.adminKey });
        assert.equal(audit.status, 200, audit.text);
        const actions = audit.json.data.map((x) => x.action).sort();
        assert.deepEqual(actions, ['alert_rule.create', 'alert_rule.delete',
            'alert_rule.update', 'alert_rule.update', 'alert_rule.update'], audit.text);
    });

    it('a PATCH that adds a new webhook target answers with that target\'s secret ' +
        '(otherwise its deliveries cannot be verified)', async () => {
        const rule = await createRule(rtad, bob, {
            name: 'new target', conditions: [{ metric: 'tvl', protocol: 'nt-p',
                operator: 'gt', threshold: 1 }],
            actions: [{ type: 'webhook', target: hooks.url('/nt-1') }],
        });
        const r = await api(rtad, 'PATCH', `/v1/alerts/rules/${rule.ruleId}`, { key: bob, body: {
            actions: [{ type: 'webhook', target: hooks.url('/nt-1') },
                { type: 'webhook', target: hooks.url('/nt-2') }],
        } });
        assert.equal(r.status, 200, r.text);
        assert.ok(!r.text.includes(rule.actions[0].secret), `old secret shown again: ${r.text}`);
        assert.match(r.json.actions[1].secret ?? '', /^whsec_/,
            `the new target's secret is never shown: ${r.text}`);
    });

    it('another user\'s rule is a 404 for every verb; admins see it; a reader key is ' +
        'forbidden', async () => {
        const rule = await createRule(rtad, bob, {
            name: 'private', conditions: [{ metric: 'tvl', protocol: 'priv-p',
                operator: 'gt', threshold: 1 }],
            actions: [{ type: 'email', target: 'bob@example.com' }],
        });
        const id = rule.ruleId;
        for (const [method, path, body] of [
            ['GET', `/v1/alerts/rules/${id}`],
            ['PUT', `/v1/alerts/rules/${id}`, { ...SPEC_BODY }],
            ['PATCH', `/v1/alerts/rules/${id}`, { name: 'mine now' }],
            ['DELETE', `/v1/alerts/rules/${id}`],
            ['GET', `/v1/alerts/rules/${id}/history`],
        ]) {
            const r = await api(rtad, method, path, { key: alice, body });
            assertError(r, 404, 'rule_not_found');
        }
        const list = await api(rtad, 'GET', '/v1/alerts/rules', { key: alice });
        assert.ok(!list.json.data.some((x) => x.ruleId === id), list.text);
        const still = await api(rtad, 'GET', `/v1/alerts/rules/${id}`, { key: bob });
        assert.equal(still.json.name, 'private', 'unchanged by the other user');
        const admin = await api(rtad, 'GET', `/v1/alerts/rules/${id}`, { key: rtad.adminKey });
        assert.equal(admin.status, 200, admin.text);
        assert.equal(admin.json.userId, 'bob');
        assertError(await api(rtad, 'GET', '/v1/alerts/rules', { key: reader }), 403,
            'forbidden');
        assertError(await api(rtad, 'POST', '/v1/alerts/rules', { key: reader, body: SPEC_BODY }),
            403, 'forbidden');
        assertError(await api(rtad, 'GET', '/v1/alerts/rules'), 401, 'missing_api_key');
        // deliveries are private too
        const mine = await listDeliveries(rtad, alice);
        assert.ok(mine.every((d) => d.ruleId !== id));
    });

    it('delivery listing filters: bad channel/status values are 400', async () => {
        assertValidation(await api(rtad, 'GET', '/v1/alerts/deliveries?channel=sms',
            { key: bob }), 'query', 'enum');
        assertValidation(await api(rtad, 'GET', '/v1/alerts/deliveries?status=lost',
            { key: bob }), 'query', 'enum');
        assertValidation(await api(rtad, 'GET', '/v1/alerts/deliveries?limit=0',
            { key: bob }), 'query.limit', 'range');
        const r = await api(rtad, 'GET', '/v1/alerts/deliveries?channel=email&status=delivered',
            { key: bob });
        assert.equal(r.status, 200, r.text);
        assert.ok(r.json.data.every((d) => d.channel === 'email' && d.status === 'delivered'));
        assertError(await api(rtad, 'GET', '/v1/alerts/deliveries/nope', { key: bob }), 404,
            'delivery_not_found');
    });
});

