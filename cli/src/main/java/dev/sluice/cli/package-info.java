/**
 * The {@code sluice} admin CLI. {@link dev.sluice.cli.SluiceCli} is the only public type:
 * {@code main} for the launcher, {@code run(out, err, args)} for tests and embedding.
 */
package dev.sluice.cli;
