"""Every action of the console, in one registry: it feeds the key bindings of each screen,
the command palette and the help screen, so they never disagree. Binding ids let users
remap keys (Textual keymaps)."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding

__all__ = ["COMMANDS", "Command", "bindings_for", "commands_for", "mutating_actions"]


@dataclass(frozen=True)
class Command:
    id: str
    key: str
    action: str
    title: str
    help: str
    screens: tuple[str, ...]  # screen ids, "*" for every screen
    mutating: bool = False  # changes the deployment: absent in read-only mode
    confirm: bool = False  # asks before doing it
    show: bool = True  # in the footer
    key_display: str | None = None
    priority: bool = False


COMMANDS: tuple[Command, ...] = (
    # Dashboard
    Command("new-episode", "n", "new_episode", "New episode",
            "Write or paste a script, preview its beats, submit", ("dashboard",), mutating=True),
    Command("example-episode", "e", "example_episode", "New episode from the example",
            "Open the new-episode form with the example script loaded", ("dashboard",),
            mutating=True),
    Command("open-episode", "enter", "open_episode", "Open episode",
            "Show the highlighted episode's beats", ("dashboard",), key_display="⏎"),
    Command("retry-episode", "r", "retry_episode", "Retry failed beats",
            "Render the highlighted episode's failed or cancelled beats again", ("dashboard",),
            mutating=True),
    Command("cancel-episode", "c", "cancel_episode", "Cancel episode",
            "Stop the episode: waiting jobs are withdrawn, workers stop its jobs",
            ("dashboard", "episode"), mutating=True, confirm=True),
    Command("pause", "p", "toggle_pause", "Pause / resume dispatch",
            "Stop or restart sending new jobs to workers",
            ("dashboard", "episode", "dead", "jobs", "fleet"),
            mutating=True),
    Command("dead-letters", "d", "dead_letters", "Dead letters",
            "Jobs that could not run: reason, payload, requeue or drop",
            ("dashboard", "episode", "jobs")),
    Command("jobs", "j", "open_jobs", "Jobs",
            "Every job by state: filter, search, detail, bulk retry / requeue / drop",
            ("dashboard", "episode", "dead", "webhooks")),
    Command("fleet", "f", "open_fleet", "Fleet",
            "Workers: GPU over time, job, log; drain / stop / resume; pause per backend",
            ("dashboard", "jobs", "dead", "webhooks", "history")),
    Command("drain-worker", "d", "drain_worker", "Drain worker",
            "Finish the job in hand, take no more", ("fleet",), mutating=True, confirm=True),
    Command("stop-worker", "s", "stop_worker", "Stop worker",
            "Exit after the job in hand", ("fleet",), mutating=True, confirm=True),
    Command("resume-worker", "u", "resume_worker", "Resume worker",
            "Take jobs again after a drain", ("fleet",), mutating=True, confirm=True),
    Command("toggle-backend", "b", "toggle_backend", "Pause / resume backend",
            "Stop or restart dispatching new jobs to the highlighted backend", ("fleet",),
            mutating=True, confirm=True),
    Command("history", "h", "open_history", "History",
            "Queue depth, throughput, failure rate, render p50/p95 per backend (hour, day)",
            ("dashboard", "jobs", "dead", "webhooks")),
    Command("toggle-window", "t", "toggle_window", "Hour / day",
            "Show the last hour or the last day", ("history",)),
    Command("webhooks", "w", "open_webhooks", "Webhook deliveries",
            "Events sent to WEBHOOK_URL: state, attempts, last answer",
            ("dashboard", "jobs", "dead"), show=False),
    Command("filter-logs", "slash", "filter_logs", "Filter logs",
            "Show only log lines containing a text", ("dashboard",), key_display="/"),
    Command("refresh", "ctrl+r", "refresh", "Refresh now",
            "Read Redis and the database now",
            ("dashboard", "episode", "dead", "jobs", "webhooks", "history", "fleet"),
            show=False),
    Command("quit", "q", "quit", "Quit", "Stop the console (and the engine it runs)",
            ("dashboard", "episode", "dead", "jobs", "keyframes")),
    # Episode detail
    Command("retry-beat", "r", "retry_beat", "Retry beat",
            "Render the highlighted beat again", ("episode",), mutating=True),
    Command("retry-failed", "R", "retry_failed", "Retry failed beats",
            "Render every failed or cancelled beat again", ("episode",), mutating=True),
    Command("copy-clip-link", "y", "copy_clip_link", "Copy clip link",
            "Copy the link of the highlighted beat's clip", ("episode",)),
    Command("copy-episode-link", "Y", "copy_episode_link", "Copy episode link",
            "Copy the link of the composed episode", ("episode",)),
    Command("compare-attempts", "a", "compare_attempts", "Compare attempts",
            "The highlighted beat's attempts side by side: keyframe, state, worker, error",
            ("episode",)),
    Command("play-clip", "o", "play_clip", "Play clip",
            "Open the highlighted beat's clip in the system's player", ("episode",)),
    Command("play-episode", "O", "play_episode", "Play episode",
            "Open the composed episode in the system's player", ("episode",)),
    Command("keyframes", "k", "open_keyframes", "Keyframes",
            "The keyframe grid: characters, scores, approve and re-roll", ("episode",)),
    # Keyframe grid
    Command("next-keyframe", "right", "next_keyframe", "Next keyframe",
            "Select the next beat's keyframe", ("keyframes",), key_display="→"),
    Command("previous-keyframe", "left", "previous_keyframe", "Previous keyframe",
            "Select the previous beat's keyframe", ("keyframes",), key_display="←"),
    Command("next-keyframe-row", "down", "next_keyframe_row", "Keyframe below",
            "Select the keyframe one row down", ("keyframes",), show=False),
    Command("previous-keyframe-row", "up", "previous_keyframe_row", "Keyframe above",
            "Select the keyframe one row up", ("keyframes",), show=False),
    Command("approve-keyframe", "a", "approve_keyframe", "Approve",
            "Approve the selected beat's keyframe: its clip renders", ("keyframes",),
            mutating=True),
    Command("approve-all-keyframes", "A", "approve_all_keyframes", "Approve all",
            "Approve every keyframe: the episode renders on", ("keyframes",), mutating=True),
    Command("reroll-keyframe", "r", "reroll_keyframe", "Re-roll",
            "Draw the selected beat's keyframe again with a new seed", ("keyframes",),
            mutating=True),
    # New episode
    Command("load-example", "ctrl+l", "load_example", "Load the example script",
            "Replace the script with the example", ("new",), mutating=True, priority=True),
    Command("submit-episode", "ctrl+s", "submit", "Submit",
            "Create the episode; the engine dispatches its beats", ("new",), mutating=True,
            priority=True),
    # Dead letters
    Command("requeue-dead", "r", "requeue", "Requeue", "Send the highlighted dead letter again",
            ("dead",), mutating=True, confirm=True),
    Command("drop-dead", "x", "drop", "Drop", "Discard the highlighted dead letter",
            ("dead",), mutating=True, confirm=True),
    Command("requeue-all-dead", "R", "requeue_all", "Requeue all", "Send every dead letter again",
            ("dead",), mutating=True, confirm=True),
    Command("drop-all-dead", "X", "drop_all", "Drop all", "Discard every dead letter",
            ("dead",), mutating=True, confirm=True),
    # Jobs
    Command("filter-jobs", "slash", "filter_jobs", "Filter jobs",
            "state:, backend:, worker:, episode: and words searched in ids and prompts",
            ("jobs",), key_display="/"),
    Command("next-page", "right_square_bracket", "next_page", "Next page",
            "The next page of jobs", ("jobs",), key_display="]"),
    Command("previous-page", "left_square_bracket", "previous_page", "Previous page",
            "The previous page of jobs", ("jobs",), key_display="["),
    Command("bulk-retry", "r", "bulk_retry", "Retry selected",
            "Render again the beats of the failed, dead or cancelled jobs the filter selects",
            ("jobs",), mutating=True, confirm=True),
    Command("bulk-requeue", "u", "bulk_requeue", "Requeue selected",
            "Send again the dead letters of the jobs the filter selects", ("jobs",),
            mutating=True, confirm=True),
    Command("bulk-drop", "x", "bulk_drop", "Drop selected",
            "Discard the dead letters of the jobs the filter selects", ("jobs",),
            mutating=True, confirm=True),
    # Everywhere
    Command("back", "escape", "back", "Back", "Return to the previous screen",
            ("episode", "new", "dead", "jobs", "keyframes", "webhooks", "history", "fleet"),
            key_display="esc"),
    Command("help", "question_mark", "help", "Help", "Keys and actions of this screen", ("*",),
            key_display="?"),
)  # fmt: skip


def commands_for(screen_id: str, *, read_only: bool = False) -> list[Command]:
    return [
        c
        for c in COMMANDS
        if (screen_id in c.screens or "*" in c.screens) and not (read_only and c.mutating)
    ]


def bindings_for(screen_id: str) -> list[Binding]:
    """Bindings of a screen (read-only mode hides the mutating ones through check_action)."""
    return [
        Binding(
            c.key,
            c.action,
            c.title,
            show=c.show,
            key_display=c.key_display,
            id=c.id,
            priority=c.priority,
        )
        for c in commands_for(screen_id)
    ]


def mutating_actions() -> set[str]:
    return {c.action for c in COMMANDS if c.mutating}
