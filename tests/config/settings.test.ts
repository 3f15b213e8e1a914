import { describe, expect, it } from 'vitest';
import { ConfigError, intSetting, kafkaBrokers, portSetting, setting } from '../../libs/config/index.ts';

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

describe('settings with a form', () => {
  it('LOG_LEVEL must be a pino level', () => {
    expect(setting('LOG_LEVEL', { LOG_LEVEL: ' warn ' })).toBe('warn');
    expect(setting('LOG_LEVEL', { LOG_LEVEL: 'silent' })).toBe('silent');
    expect(() => setting('LOG_LEVEL', { LOG_LEVEL: 'verbose' })).toThrow(
      /^LOG_LEVEL: expected one of trace, debug, info, warn, error, fatal, silent, got "verbose"/,
    );
  });

  it('KAFKA_BROKERS must be host:port pairs', () => {
    expect(kafkaBrokers({ KAFKA_BROKERS: 'a:9092, b:9093' })).toEqual(['a:9092', 'b:9093']);
    expect(kafkaBrokers({ KAFKA_BROKERS: '[::1]:9092' })).toEqual(['[::1]:9092']);
    for (const bad of ['127.0.0.1:abc', '127.0.0.1', 'a:9092,b', ':9092', 'a:0', 'a:65536', 'a:0x10', ',']) {
      expect(() => kafkaBrokers({ KAFKA_BROKERS: bad }), bad).toThrow(/^KAFKA_BROKERS: /);
    }
    expect(() => kafkaBrokers({ KAFKA_BROKERS: '127.0.0.1:abc' })).toThrow(/host:port.*"127\.0\.0\.1:abc"/);
  });

  it('DATABASE_URL must be a postgres:// URL, and the error does not show it', () => {
    expect(setting('DATABASE_URL', { DATABASE_URL: 'postgresql://u:p@h/db' })).toBe('postgresql://u:p@h/db');
    for (const bad of ['not a url', 'http://h/db', 'u:SECRETPW@h/db']) {
      expect(() => setting('DATABASE_URL', { DATABASE_URL: bad }), bad).toThrow(
        /^DATABASE_URL: expected a URL like postgres:\/\//,
      );
      expect(() => setting('DATABASE_URL', { DATABASE_URL: bad })).not.toThrow(/SECRETPW/);
    }
  });

  it('SCHEMA_REGISTRY_URL must be an http(s):// URL', () => {
    expect(setting('SCHEMA_REGISTRY_URL', { SCHEMA_REGISTRY_URL: 'https://r.example/api' })).toBe(
      'https://r.example/api',
    );
    for (const bad of ['not a url', 'ftp://r/x', '127.0.0.1:8081']) {
      expect(() => setting('SCHEMA_REGISTRY_URL', { SCHEMA_REGISTRY_URL: bad }), bad).toThrow(
        /^SCHEMA_REGISTRY_URL: expected an http:\/\/ or https:\/\/ URL/,
      );
    }
  });

  it('SINK_DUCKDB_MEMORY must be a size DuckDB takes (it was found wrong only at the first merge)', () => {
    for (const good of ['128MB', '2GB', '1.5GiB', '512 MiB']) {
      expect(setting('SINK_DUCKDB_MEMORY', { SINK_DUCKDB_MEMORY: good })).toBe(good);
    }
    for (const bad of ['banana', '12', '0MB', '1PB', '80%']) {
      expect(() => setting('SINK_DUCKDB_MEMORY', { SINK_DUCKDB_MEMORY: bad }), bad).toThrow(
        /^SINK_DUCKDB_MEMORY: expected a size such as 512MB, 2GB or 1.5GiB/,
      );
    }
  });
});
