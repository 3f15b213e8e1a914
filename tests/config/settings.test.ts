import { describe, expect, it } from 'vitest';
import { ConfigError, intSetting, portSetting, setting } from '../../libs/config/index.ts';

describe('number settings', () => {
  it('take a value of only whitespace as unset (the default), never as 0', () => {
    expect(portSetting('WEBHOOK_PORT', { WEBHOOK_PORT: ' ' }, { anyFree: true })).toBe(8080);
    expect(intSetting('RELAY_RETENTION_HOURS', { RELAY_RETENTION_HOURS: ' \t' })).toBe(24);
    expect(setting('WEBHOOK_HOST', { WEBHOOK_HOST: '  ' })).toBe('127.0.0.1');
  });

  it('ignore whitespace around a value', () => {
    expect(portSetting('WEBHOOK_PORT', { WEBHOOK_PORT: ' 8090\n' })).toBe(8090);
    expect(intSetting('RELAY_RETENTION_HOURS', { RELAY_RETENTION_HOURS: ' 0 ' })).toBe(0);
  });

  it.each(['0x10', '1e3', '1.0', '-1', '+5', '1_000', '12abc', '0b1', 'Infinity', '99999999999999999999'])(
    'refuse "%s", naming the setting',
    (value) => {
      expect(() => intSetting('RELAY_RETENTION_HOURS', { RELAY_RETENTION_HOURS: value })).toThrow(ConfigError);
      expect(() => intSetting('RELAY_RETENTION_HOURS', { RELAY_RETENTION_HOURS: value })).toThrow(
        /^RELAY_RETENTION_HOURS: expected a whole number >= 0/,
      );
      expect(() => portSetting('WEBHOOK_PORT', { WEBHOOK_PORT: value }, { anyFree: true })).toThrow(
        /^WEBHOOK_PORT: expected a TCP port \(0-65535\)/,
      );
    },
  );

  it('still hold their documented range', () => {
    expect(() => portSetting('SINK_PORT', { SINK_PORT: '70000' }, { anyFree: true })).toThrow(/^SINK_PORT:/);
    expect(() => portSetting('KAFKA_PORT', { KAFKA_PORT: '0' })).toThrow(
      /^KAFKA_PORT: expected a TCP port \(1-65535\)/,
    );
    expect(() => intSetting('SINK_CONSUMERS', { SINK_CONSUMERS: '0' }, 1)).toThrow(/^SINK_CONSUMERS: .* >= 1/);
    expect(intSetting('SINK_CONSUMERS', { SINK_CONSUMERS: '007' }, 1)).toBe(7);
  });
});
