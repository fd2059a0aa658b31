import Forwarder
