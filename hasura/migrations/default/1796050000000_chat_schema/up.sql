-- Phenom chat, Implementation B ("Hasura Lite"): the chat tables, in their own schema.
-- Synapse's tables are never touched. Applied by `hasura migrate apply` or, with the very
-- same file, by `phenom-chat lite migrate up`; see docs/architecture.md (schema) and
-- docs/deployment.md (applying it).

CREATE SCHEMA chat;

COMMENT ON SCHEMA chat IS 'Phenom chat, Implementation B (Hasura Lite)';

CREATE FUNCTION chat.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- People (keyed by their Cognito `sub`) and AI agents (keyed by their Cognito app client id,
-- the `sub` of their client-credentials tokens). Hasura's X-Hasura-User-Id is this id.
CREATE TABLE chat.users (
    id text PRIMARY KEY CHECK (id <> '' AND length(id) <= 255),
    -- Matrix-localpart-like handle, the same one Implementation A would give the user.
    username text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9._=/+-]{1,64}$'),
    display_name text CHECK (length(display_name) <= 256),
    email text CHECK (length(email) <= 320),
    -- Cognito groups as last provisioned (sorted, de-duplicated); memberships follow from them.
    groups text[] NOT NULL DEFAULT '{}',
    groups_source text NOT NULL DEFAULT 'provision',
    is_agent boolean NOT NULL DEFAULT false,
    disabled boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER users_touch BEFORE UPDATE ON chat.users
    FOR EACH ROW EXECUTE FUNCTION chat.touch_updated_at();

-- The managed rooms (internal, partners, community), written from the rooms config.
CREATE TABLE chat.rooms (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    key text NOT NULL UNIQUE CHECK (key ~ '^[a-z0-9_-]{1,64}$'),
    alias text NOT NULL UNIQUE,
    name text NOT NULL,
    topic text NOT NULL DEFAULT '',
    join_rule text NOT NULL DEFAULT 'invite' CHECK (join_rule IN ('public', 'invite', 'knock')),
    published boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER rooms_touch BEFORE UPDATE ON chat.rooms
    FOR EACH ROW EXECUTE FUNCTION chat.touch_updated_at();

-- Who is in which room. Written by provisioning from the rooms core (group -> rooms), never
-- by app clients. role: moderators may soft-delete others' messages and read the audit log.
CREATE TABLE chat.memberships (
    room_id uuid NOT NULL REFERENCES chat.rooms (id) ON DELETE CASCADE,
    user_id text NOT NULL REFERENCES chat.users (id) ON DELETE CASCADE,
    membership text NOT NULL CHECK (membership IN ('join', 'leave', 'ban')),
    role text NOT NULL DEFAULT 'member' CHECK (role IN ('member', 'moderator', 'admin')),
    reason text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, user_id)
);

CREATE INDEX memberships_user ON chat.memberships (user_id);

CREATE TRIGGER memberships_touch BEFORE UPDATE ON chat.memberships
    FOR EACH ROW EXECUTE FUNCTION chat.touch_updated_at();

-- THE rule of who may read (and post in) a room, stated once: a joined membership of an
-- enabled user. Hasura's permissions reach it through the `readers` relationships; the
-- Action webhook and the MCP backend call chat.user_can_read_room / user_can_post_room.
CREATE VIEW chat.room_readers AS
SELECT
    m.room_id,
    m.user_id,
    u.is_agent,
    (m.role IN ('moderator', 'admin')) AS is_moderator
FROM chat.memberships AS m
JOIN chat.users AS u ON u.id = m.user_id
WHERE m.membership = 'join' AND NOT u.disabled;

COMMENT ON VIEW chat.room_readers IS
    'Who may read and post in which room: joined members who are not disabled';

CREATE FUNCTION chat.user_can_read_room(p_user_id text, p_room_id uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM chat.room_readers AS r
        WHERE r.user_id = p_user_id AND r.room_id = p_room_id
    )
$$;

-- Posting is allowed to exactly the readers; what may be posted is the moderation core's job.
CREATE FUNCTION chat.user_can_post_room(p_user_id text, p_room_id uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT chat.user_can_read_room(p_user_id, p_room_id)
$$;

CREATE FUNCTION chat.user_can_moderate_room(p_user_id text, p_room_id uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM chat.room_readers AS r
        WHERE r.user_id = p_user_id AND r.room_id = p_room_id AND r.is_moderator
    )
$$;

-- Messages. `id` is the public id (the MCP tools' event_id); `seq` is a global, strictly
-- increasing cursor (timeline pages, wait_for_messages, LISTEN payloads).
CREATE TABLE chat.messages (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    room_id uuid NOT NULL REFERENCES chat.rooms (id) ON DELETE CASCADE,
    sender_id text NOT NULL REFERENCES chat.users (id),
    kind text NOT NULL DEFAULT 'text' CHECK (kind IN ('text', 'notice', 'emote')),
    body text NOT NULL CHECK (length(body) <= 65536),
    formatted_body text CHECK (length(formatted_body) <= 131072),
    reply_to_id uuid,
    thread_root_id uuid,
    -- Preview cards (url, title, description, image, site_name), same core as Implementation A.
    previews jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(previews) = 'array'),
    -- true while cards are being fetched; the update that fills them in notifies subscribers.
    previews_pending boolean NOT NULL DEFAULT false,
    idempotency_key text CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    created_at timestamptz NOT NULL DEFAULT now(),
    edited_at timestamptz,
    deleted_at timestamptz,
    deleted_by text REFERENCES chat.users (id),
    delete_reason text CHECK (length(delete_reason) <= 1024),
    search tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, body)) STORED,
    -- one message per (sender, room, key): a retried send returns the first message
    CONSTRAINT messages_idempotency UNIQUE (sender_id, room_id, idempotency_key),
    CONSTRAINT messages_room_id_id UNIQUE (room_id, id),
    -- replies and threads stay inside their room
    CONSTRAINT messages_reply_to FOREIGN KEY (room_id, reply_to_id)
        REFERENCES chat.messages (room_id, id) ON DELETE SET NULL (reply_to_id),
    CONSTRAINT messages_thread_root FOREIGN KEY (room_id, thread_root_id)
        REFERENCES chat.messages (room_id, id) ON DELETE SET NULL (thread_root_id)
);

CREATE INDEX messages_room_timeline ON chat.messages (room_id, seq DESC);
CREATE INDEX messages_thread ON chat.messages (thread_root_id, seq) WHERE thread_root_id IS NOT NULL;
CREATE INDEX messages_reply_to ON chat.messages (reply_to_id) WHERE reply_to_id IS NOT NULL;
CREATE INDEX messages_sender ON chat.messages (sender_id, seq DESC);
CREATE INDEX messages_search ON chat.messages USING gin (search);

-- Earlier versions of edited messages (newest edit last).
CREATE TABLE chat.message_edits (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id uuid NOT NULL REFERENCES chat.messages (id) ON DELETE CASCADE,
    body text NOT NULL,
    formatted_body text,
    replaced_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX message_edits_message ON chat.message_edits (message_id, id);

-- Edits keep the previous text in message_edits; a soft delete empties the message for good
-- (like a Matrix redaction) and forgets its edits. Identity columns never change.
CREATE FUNCTION chat.messages_before_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id <> OLD.id OR NEW.room_id <> OLD.room_id OR NEW.sender_id <> OLD.sender_id
        OR NEW.created_at <> OLD.created_at
        OR NEW.idempotency_key IS DISTINCT FROM OLD.idempotency_key THEN
        RAISE EXCEPTION 'a message''s id, room, sender, time and idempotency key cannot change'
            USING ERRCODE = 'check_violation';
    END IF;
    IF OLD.deleted_at IS NOT NULL THEN
        NEW.deleted_at := OLD.deleted_at;
        NEW.deleted_by := OLD.deleted_by;
        NEW.delete_reason := OLD.delete_reason;
        NEW.edited_at := OLD.edited_at;
        NEW.body := '';
        NEW.formatted_body := NULL;
        NEW.previews := '[]'::jsonb;
        NEW.previews_pending := false;
        RETURN NEW;
    END IF;
    IF NEW.deleted_at IS NOT NULL THEN
        NEW.deleted_at := now();
        NEW.body := '';
        NEW.formatted_body := NULL;
        NEW.previews := '[]'::jsonb;
        NEW.previews_pending := false;
        DELETE FROM chat.message_edits WHERE message_id = OLD.id;
        RETURN NEW;
    END IF;
    IF NEW.body IS DISTINCT FROM OLD.body OR NEW.formatted_body IS DISTINCT FROM OLD.formatted_body THEN
        INSERT INTO chat.message_edits (message_id, body, formatted_body)
        VALUES (OLD.id, OLD.body, OLD.formatted_body);
        NEW.edited_at := now();
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER messages_before_update BEFORE UPDATE ON chat.messages
    FOR EACH ROW EXECUTE FUNCTION chat.messages_before_update();

-- LISTEN wakeups without Hasura subscriptions (the MCP backend's wait_for_messages):
-- channel chat_message on insert, chat_message_update on edit/delete/previews filled in.
-- Payload: {"room_id": "<uuid>", "seq": <bigint>, "id": "<uuid>"}; delivered at commit.
CREATE FUNCTION chat.notify_message() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(
        CASE WHEN TG_OP = 'INSERT' THEN 'chat_message' ELSE 'chat_message_update' END,
        json_build_object('room_id', NEW.room_id, 'seq', NEW.seq, 'id', NEW.id)::text
    );
    RETURN NULL;
END
$$;

CREATE TRIGGER messages_notify_insert AFTER INSERT ON chat.messages
    FOR EACH ROW EXECUTE FUNCTION chat.notify_message();
CREATE TRIGGER messages_notify_update AFTER UPDATE ON chat.messages
    FOR EACH ROW EXECUTE FUNCTION chat.notify_message();

CREATE TABLE chat.reactions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    room_id uuid NOT NULL,
    message_id uuid NOT NULL,
    user_id text NOT NULL REFERENCES chat.users (id) ON DELETE CASCADE,
    emoji text NOT NULL CHECK (length(emoji) BETWEEN 1 AND 64),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT reactions_once UNIQUE (message_id, user_id, emoji),
    CONSTRAINT reactions_message FOREIGN KEY (room_id, message_id)
        REFERENCES chat.messages (room_id, id) ON DELETE CASCADE
);

CREATE INDEX reactions_user ON chat.reactions (user_id);

-- Full-text search (the app's searchMessages field and the MCP search_messages tool).
-- Returns SETOF chat.messages, so Hasura applies the messages select permission to it.
CREATE FUNCTION chat.search_messages(query text) RETURNS SETOF chat.messages
LANGUAGE sql STABLE AS $$
    SELECT m.*
    FROM chat.messages AS m
    WHERE m.deleted_at IS NULL
      AND m.search @@ websearch_to_tsquery('english'::regconfig, query)
$$;

-- Link-preview cards cache, written by the link-preview Lambda and the Action webhook.
CREATE TABLE chat.link_previews (
    url text PRIMARY KEY CHECK (length(url) <= 4096),
    card jsonb,
    preview jsonb,
    error text,
    reason text,
    fetched_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

CREATE INDEX link_previews_expires ON chat.link_previews (expires_at);

-- Moderation state, counted in PostgreSQL like Implementation A's phenom_moderation_* tables
-- (same columns; room_id is the chat.rooms id).
CREATE TABLE chat.moderation_flood (
    user_id text NOT NULL,
    room_id uuid NOT NULL,
    window_ms bigint NOT NULL,
    bucket bigint NOT NULL,
    count integer NOT NULL,
    PRIMARY KEY (user_id, room_id, window_ms, bucket)
);

CREATE TABLE chat.moderation_mutes (
    user_id text NOT NULL,
    room_id uuid NOT NULL,
    until_ts bigint NOT NULL,
    PRIMARY KEY (user_id, room_id)
);

CREATE TABLE chat.moderation_audit (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ts bigint NOT NULL,
    room_id uuid NOT NULL,
    user_id text NOT NULL,
    policy text NOT NULL,
    rule text NOT NULL,
    action text NOT NULL,
    event_type text NOT NULL,
    detail text NOT NULL
);

CREATE INDEX moderation_audit_ts ON chat.moderation_audit (ts);
CREATE INDEX moderation_audit_user ON chat.moderation_audit (user_id, room_id, ts);
CREATE INDEX moderation_audit_room ON chat.moderation_audit (room_id, ts);
