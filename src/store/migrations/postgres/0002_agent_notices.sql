-- Tell every process when a card changes, so each one's directory stays current.
CREATE OR REPLACE FUNCTION baton_agent_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('baton_agents', COALESCE(NEW.id, OLD.id));
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE OR REPLACE TRIGGER agents_changed AFTER INSERT OR UPDATE OR DELETE ON agents
    FOR EACH ROW EXECUTE FUNCTION baton_agent_changed();
